"""Every command answers a bad option or argument with one line and exit 2, never a usage block."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from helpers import REPO

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_bad_option_is_one_line_and_exit_2(script: str) -> None:
    module = SCRIPTS[script].split(":")[0]
    result = subprocess.run(
        [sys.executable, "-m", module, "--no-such-option"], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "--no-such-option" in lines[0] and "--help" in lines[0]


@pytest.mark.parametrize("script", ["ufd-detect", "ufd-scan"])
def test_help_states_every_exit_status(script: str) -> None:
    module = SCRIPTS[script].split(":")[0]
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for status in (
        "0 ",
        "1 some inputs failed",
        "2 usage or bundle error",
        "3 internal error",
        "130 interrupted",
    ):
        assert status in text, status
