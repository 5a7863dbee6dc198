"""The runtime and ufd-detect never import torch (a device gets only the runtime)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import random_image

# Make `import torch` (and open_clip, torchvision) fail, then run a CLI in-process.
BLOCK_AND_RUN = """
import importlib, sys
for name in ("torch", "torchvision", "open_clip"):
    sys.modules[name] = None  # any import of them now raises ImportError
command = sys.argv[1]
main = importlib.import_module(f"ufd.cli.{command}").main
sys.argv = [f"ufd-{command}", *sys.argv[2:]]
try:
    main()
except SystemExit as e:
    sys.exit(e.code)
"""


def run_without_torch(command: str, *args: object) -> subprocess.CompletedProcess:
    """``ufd-<command> args`` in a fresh interpreter where torch cannot be imported."""
    argv = [sys.executable, "-c", BLOCK_AND_RUN, command, *(str(a) for a in args)]
    return subprocess.run(argv, capture_output=True, text=True)


def test_runtime_import_does_not_load_torch() -> None:
    code = "import sys, ufd.runtime, ufd.cli.detect; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_ufd_detect_runs_with_torch_unimportable(tiny_bundle: Path, tmp_path: Path) -> None:
    image = random_image(tmp_path / "x.png", (300, 300))
    result = run_without_torch("detect", tiny_bundle, image, "--format", "jsonl", "--provenance")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["error"] is None and record["label"] in ("fake", "real")
    assert record["provenance"] is None  # read (watermark included), without torch


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


def test_index_calibrate_eval_run_with_torch_unimportable(
    tiny_bundle: Path, world_features: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    f = world_features
    steps = [
        ("index", bundle, "--real-features", f["bank_real"], "--fake-features", f["bank_fake"]),
        ("index", bundle, "--real-only", "--real-features", f["bank_real"]),
        ("calibrate", bundle, "--method", "realonly", "--real-features", f["held_real"]),
        ("calibrate", bundle, "--real-features", f["held_real"], "--target-fpr", "0.1"),
    ]
    for command, *args in steps:
        result = run_without_torch(command, *args)
        assert result.returncode == 0, (command, result.stderr)
    for cls in ("0_real", "1_fake"):
        (tmp_path / "data" / "s" / cls).mkdir(parents=True)
        for i in range(2):
            random_image(tmp_path / "data" / "s" / cls / f"{i}.png", (240, 240), seed=i)
    out = tmp_path / "eval"
    result = run_without_torch(
        "eval", bundle, tmp_path / "data", "--method", "all", "--out", out, "--no-cache"
    )
    assert result.returncode == 0, result.stderr
    assert (out / "results.json").is_file() and "| s |" in (out / "table.md").read_text()
