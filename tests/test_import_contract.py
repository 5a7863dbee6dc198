"""The import contract of `make lint` (pyproject.toml [tool.importlinter]) holds, and bites.

The package is laid out as ufd.runtime = runtime/, ufd.client = runtime/client/...;
each test lays a copy out as the `ufd` namespace in a temporary folder and runs
lint-imports on it, so that a change can be planted without touching the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def _layout(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    package = root / "ufd"
    shutil.copytree(REPO / "runtime", package / "runtime", ignore=shutil.ignore_patterns("client"))
    shutil.copytree(REPO / "runtime" / "client", package / "client")
    shutil.copytree(REPO / "export", package / "export")
    shutil.copytree(REPO / "cli", package / "cli")
    return root


def _lint(root: Path) -> subprocess.CompletedProcess:
    if not LINT.exists():
        pytest.fail(f"{LINT} missing: make test installs import-linter (the dev extra)")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "reversed_import", "contract"),
    [
        ("runtime/bundle/schema.py", "import ufd.runtime.methods", "ufd layers"),
        ("runtime/methods/base.py", "import ufd.runtime.metrics", "ufd layers"),
        ("runtime/io/decode.py", "import torch", "never imports torch"),
        ("runtime/client/__init__.py", "import numpy", "only the standard library"),
        ("runtime/serve/engine.py", "import kserve", "speaks KServe"),
    ],
)
def test_a_reversed_import_breaks_the_contract(
    tmp_path: Path, module: str, reversed_import: str, contract: str
) -> None:
    root = _layout(tmp_path)
    planted = root / "ufd" / module.replace("runtime/client", "client")
    planted.write_text(planted.read_text() + f"\n{reversed_import}  # planted by the test\n")
    result = _lint(root)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and reversed_import.split()[-1] in broken
