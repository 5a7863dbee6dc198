"""The runtime and ufd-detect never import torch (a device gets only the runtime)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import random_image

# Make `import torch` (and open_clip, torchvision) fail, then run the CLI in-process.
BLOCK_AND_RUN = """
import sys
for name in ("torch", "torchvision", "open_clip"):
    sys.modules[name] = None  # any import of them now raises ImportError
from ufd.cli.detect import main
sys.argv = ["ufd-detect", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    sys.exit(e.code)
"""


def test_runtime_import_does_not_load_torch() -> None:
    code = "import sys, ufd.runtime, ufd.cli.detect; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_ufd_detect_runs_with_torch_unimportable(tiny_bundle: Path, tmp_path: Path) -> None:
    image = random_image(tmp_path / "x.png", (256, 256))
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_AND_RUN, str(tiny_bundle), str(image), "--format", "jsonl"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["error"] is None and record["label"] in ("fake", "real")


def test_ufd_export_without_the_extra_prints_an_install_hint(tmp_path: Path) -> None:
    code = """
import sys
sys.modules["torch"] = None
from ufd.cli.export import main
sys.argv = ["ufd-export", "--out", sys.argv[1], "--model", "ufd-tiny-vit"]
main()
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "pip install 'ufd[export]'" in result.stderr
    assert "Traceback" not in result.stderr
