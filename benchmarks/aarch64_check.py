"""The plain runtime on aarch64, under emulation, scores like x86-64 (not part of CI: slow).

1. An arm64 Debian root filesystem (``debootstrap --foreign``: packages unpacked,
   nothing run) with its Python 3.11, from Debian's archive.
2. The runtime's aarch64 wheels (``pip download --only-binary=:all: --platform
   manylinux_2_28_aarch64``) and ufd's own wheel, unpacked into a site folder.
3. ``qemu-aarch64-static -L ROOTFS ROOTFS/usr/bin/python3.11`` (Debian's
   qemu-user-static; no binfmt or chroot needed) opens a tiny bundle with an
   int8 encoder, a usearch k-NN bank and real-only bank, scores images with every
   method, and the same script runs natively; the records are compared.

Needs root (apt-get, debootstrap) and Debian's and PyPI's archives.

Usage:
    python benchmarks/aarch64_check.py [--work /tmp/ufd-aarch64]
Writes benchmarks/results/aarch64.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLATFORM = [
    "--platform",
    "manylinux_2_28_aarch64",
    "--platform",
    "manylinux2014_aarch64",
    "--platform",
    "manylinux_2_17_aarch64",
]
SCORE = """
import json, sys, time
from pathlib import Path
t = time.perf_counter()
from ufd.runtime import Detector
detector = Detector.open(sys.argv[1], precision=sys.argv[3], provider="cpu")
images = sorted(Path(sys.argv[2]).glob("*.png"))
records = detector.score_images(images, names=[p.name for p in images], method="all")
print(json.dumps({"seconds": time.perf_counter() - t, "precision": detector.precision,
                  "records": [r.to_dict(("path", *r.values, "error")) for r in records]}))
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd[:6]), "...", flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def rootfs(work: Path) -> Path:
    """An arm64 Debian bookworm with python3 unpacked (made once)."""
    root = work / "rootfs"
    if not (root / "usr/bin/python3.11").exists():
        run(
            ["apt-get", "install", "-y", "-q", "qemu-user-static", "debootstrap"],
            capture_output=True,
        )
        if not (root / "debootstrap").exists():
            run(
                [
                    "debootstrap",
                    "--arch=arm64",
                    "--foreign",
                    "--variant=minbase",
                    "--include=python3.11,libpython3.11-stdlib,zlib1g,libexpat1,libffi8,libssl3",
                    "bookworm",
                    str(root),
                    "http://deb.debian.org/debian",
                ],
                capture_output=True,
            )
        # --foreign unpacks only the essential set; the rest (python3.11 among them) waits
        # for a second stage that would need the emulated dpkg. Unpacking is enough here.
        for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(root)])
    arm_cpuinfo(root)
    return root


def arm_cpuinfo(root: Path) -> None:
    """An arm64 ``/proc/cpuinfo`` (Cortex-A72, as on a Raspberry Pi 4) in the rootfs.

    qemu-user passes the host's x86 ``/proc/cpuinfo`` through, in which onnxruntime's
    cpuinfo finds no arm processor and dereferences a null pointer at import
    (SIGSEGV); ``-L ROOTFS`` makes the emulated process read this file instead.
    """
    block = (
        "processor\t: {}\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    )
    (root / "proc").mkdir(exist_ok=True)
    text = "".join(block.format(i) for i in range(os.cpu_count() or 1))
    (root / "proc" / "cpuinfo").write_text(text)


def site(work: Path) -> Path:
    """The runtime's aarch64 wheels (downloaded once) and this tree's ufd, in one folder."""
    folder, wheels = work / "site", work / "wheels"
    if not folder.exists():
        deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        pip = [sys.executable, "-m", "pip"]
        run(
            [
                *pip,
                "download",
                "--quiet",
                "--only-binary=:all:",
                *PLATFORM,
                "--python-version",
                "3.11",
                "-d",
                str(wheels),
                *deps,
            ]
        )
        run(
            [
                *pip,
                "install",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                *PLATFORM,
                "--python-version",
                "3.11",
                "--target",
                str(folder),
                *map(str, wheels.glob("*.whl")),
            ]
        )
    ours = work / "ufd-wheel"  # ufd itself is rebuilt every time: the code under test
    shutil.rmtree(ours, ignore_errors=True)
    shutil.rmtree(folder / "ufd", ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(ours), str(REPO)])
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--upgrade",
            "--target",
            str(folder),
            *map(str, ours.glob("*.whl")),
        ]
    )
    return folder


def tiny_bundle(work: Path) -> tuple[Path, Path]:
    """A tiny bundle (int8 encoder, usearch nn + realonly banks) and a few images."""
    import numpy as np
    from PIL import Image

    bundle, images = work / "bundle", work / "images"
    if bundle.exists():
        return bundle, images
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import random_head

    from ufd.export.graph.build import ExportOptions, export_bundle
    from ufd.export.train.synthetic import SyntheticWorld
    from ufd.runtime.building.banks import IndexOptions, build_index
    from ufd.runtime.building.calibrate import calibrate

    head = random_head(work / "head.pth")
    export_bundle(
        ExportOptions(
            out=bundle,
            model="ufd-tiny-vit",
            pretrained="none",
            head=str(head),
        )
    )
    world = SyntheticWorld(dim=768, seed=0)
    build_index(bundle, world.reals(300, 1), world.fakes(300, 0, 2), IndexOptions(storage="int8"))
    build_index(
        bundle,
        world.reals(300, 3),
        np.zeros((0, 768), np.float32),
        IndexOptions(),
        method="realonly",
    )
    from ufd.runtime import Detector

    calibrate(Detector.open(bundle, provider="cpu"), "realonly", world.reals(100, 4), 0.1, 3)
    images.mkdir()
    for i in range(6):
        pixels = np.random.default_rng(i).integers(0, 256, (240 + 10 * i, 260, 3), np.uint8)
        Image.fromarray(pixels).save(images / f"img{i}.png")
    return bundle, images


def differences(a: list[dict], b: list[dict]) -> tuple[dict[str, float], bool]:
    """The largest absolute difference of each float field, and whether every label agrees."""
    worst, labels_equal = {}, True
    for x, y in zip(a, b, strict=True):
        for key, value in y.items():
            if isinstance(value, float) and isinstance(x[key], float):  # None: no such neighbour
                worst[key] = max(worst.get(key, 0.0), abs(x[key] - value))
            elif key.endswith("label") and x[key] != value:
                labels_equal = False
    return worst, labels_equal


def score_all(args: argparse.Namespace, cpus: list[str]) -> tuple[dict, dict]:
    """Records of every method, fp32 and int8, natively and under each emulated CPU."""
    root, packages, (bundle, images) = rootfs(args.work), site(args.work), tiny_bundle(args.work)
    qemu = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
    emulated = [qemu, "-L", str(root), str(root / "usr/bin/python3.11")]
    env = {"PYTHONPATH": str(packages), "HOME": str(args.work), "UFD_CACHE_DIR": str(args.work)}
    hosts = [("x86_64", [sys.executable], None)]
    hosts += [(f"aarch64 {cpu}", emulated, env | {"QEMU_CPU": cpu}) for cpu in cpus]
    records, walls = {}, {}
    for precision in ("fp32", "int8"):
        for host, python, host_env in hosts:
            start = time.perf_counter()
            out = run(
                [*python, "-c", SCORE, str(bundle), str(images), precision],
                capture_output=True,
                text=True,
                env=host_env,
            )
            walls[f"{host}/{precision}"] = time.perf_counter() - start
            records[f"{host}/{precision}"] = json.loads(out.stdout.splitlines()[-1])["records"]
    return records, walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-aarch64"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--cpus",
        default="cortex-a72,cortex-a76,max",
        help="qemu CPU models (Pi 4, Pi 5 class, all qemu has)",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cpus = args.cpus.split(",")
    records, walls = score_all(args, cpus)
    pairs = {"x86-64 int8 vs x86-64 fp32": ("x86_64/int8", "x86_64/fp32")}
    for cpu in cpus:
        host = f"aarch64 {cpu}"
        pairs[f"{host} fp32 vs x86-64 fp32"] = (f"{host}/fp32", "x86_64/fp32")
        pairs[f"{host} int8 vs x86-64 int8"] = (f"{host}/int8", "x86_64/int8")
        pairs[f"{host} int8 vs {host} fp32"] = (f"{host}/int8", f"{host}/fp32")
    report = {"wall_s": walls, "records": records, "comparisons": {}}
    n = len(records["x86_64/fp32"])
    lines = [
        f"{n} images, every method, tiny bundle; emulated runs "
        + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items() if k.startswith("aarch64")),
        "",
        "| comparison | labels equal | logit | prob | nn_score | realonly_score |",
        "|---|---|---|---|---|---|",
    ]
    for name, (a, b) in pairs.items():
        worst, labels_equal = differences(records[a], records[b])
        report["comparisons"][name] = {"max_abs_diff": worst, "labels_equal": labels_equal}
        cells = " | ".join(
            f"{worst.get(k, float('nan')):.2e}"
            for k in ("logit", "prob", "nn_score", "realonly_score")
        )
        lines.append(f"| {name} | {labels_equal} | {cells} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "aarch64.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "aarch64.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
