"""The plain install needs no compiler: wheels only, on every target platform.

* A fresh venv with ``pip install --only-binary=:all: .`` (no build tools used for
  any dependency) scores a bundle with every runtime method exactly like this
  full install.
* For Linux x86-64 and aarch64 and macOS arm64, CPython 3.11-3.13, pip resolves
  every runtime dependency to a wheel (``--dry-run``, metadata only).

Both need PyPI (a package registry) and are marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow

PLATFORMS = {
    "linux-x86_64": ["manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64"],
    "linux-aarch64": ["manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64"],
    "macos-arm64": [f"macosx_{v}_0_arm64" for v in (14, 13, 12, 11)],
}
PYTHONS = ("3.11", "3.12", "3.13")


def runtime_requirements() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_every_runtime_dependency_has_a_wheel(platform: str, python: str, tmp_path) -> None:
    tags = [arg for tag in PLATFORMS[platform] for arg in ("--platform", tag)]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--only-binary=:all:",
            *tags,
            "--python-version",
            python,
            "--target",
            str(tmp_path / "t"),
            "--report",
            str(report),
            *runtime_requirements(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed = json.loads(report.read_text())["install"]
    names = {item["metadata"]["name"].lower() for item in installed}
    assert {"onnxruntime", "numpy", "pillow", "usearch"} <= names
    assert all(item["download_info"]["url"].endswith(".whl") for item in installed)


def test_wheel_only_venv_scores_like_the_full_install(full_bundle: Path, tmp_path: Path) -> None:
    from importlib import metadata

    from helpers import random_image

    from ufd.runtime import Detector

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = tmp_path / "pins.txt"  # the same versions as here: same kernels, same numbers
    pins.write_text(
        "".join(
            f"{name}=={metadata.version(name)}\n"
            for name in ("onnxruntime", "numpy", "pillow", "usearch")
        )
    )
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    result = subprocess.run(
        [*pip, "--only-binary=:all:", "-c", str(pins), str(REPO)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "hnswlib" not in frozen and "torch" not in frozen
    images = [random_image(tmp_path / f"{i}.png", (250, 240), seed=i) for i in range(4)]
    out = subprocess.run(
        [
            str(venv / "bin" / "ufd-detect"),
            str(full_bundle),
            *map(str, images),
            "--method",
            "all",
            "--provenance",
            "--format",
            "jsonl",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    plain = [json.loads(line) for line in out.stdout.splitlines()]
    detector = Detector.open(full_bundle, provider="cpu", provenance=True)
    here = detector.score_images(images, method="all")
    assert plain == [r.to_dict(tuple(plain[0])) for r in here]
