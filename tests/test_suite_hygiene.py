"""The suite cleans up after itself: a CI host ran out of disk on caches runs left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO


def _collect_only(env: dict[str, str]) -> None:
    """A child pytest run (collection only: its configure and unconfigure hooks run)."""
    probe = REPO / "tests" / "test_import_contract.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_run_removes_the_cache_folder_it_made(tmp_path: Path) -> None:
    """Each run's UFD_CACHE_DIR holds gigabytes of graphs; it must not outlive the run."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "UFD_CACHE_DIR"} | {"TMPDIR": str(scratch)}
    _collect_only(env)
    assert not list(scratch.glob("ufd-test-cache-*")), sorted(p.name for p in scratch.iterdir())


def test_a_given_cache_folder_is_left_alone(tmp_path: Path) -> None:
    """A cache the caller named (UFD_CACHE_DIR set) is the caller's: the run keeps it."""
    cache = tmp_path / "mine"
    cache.mkdir()
    (cache / "keep.txt").write_text("kept")
    env = os.environ | {"UFD_CACHE_DIR": str(cache)}
    _collect_only(env)
    assert (cache / "keep.txt").read_text() == "kept"
