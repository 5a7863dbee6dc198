"""Which graph ``--precision auto`` takes on CPUs we do not have, and its measured error.

Runs ``ufd-bundle verify --parity --json`` on one bundle natively and under
qemu-user for:

* x86-64 ``-cpu Haswell-v4`` (AVX2 without VNNI: AMD Zen 2/3, most pre-2021 x86),
  with Debian's qemu-user (the same venv);
* aarch64 Cortex-A76, Neoverse-N1, Neoverse-V1 and ``max``, with a Debian arm64
  root filesystem and the runtime's aarch64 wheels (``benchmarks/aarch64_check.py``
  makes both) and qemu 10 (bookworm-backports' ``qemu-user``, unpacked here, not
  installed: qemu 7.2 has no Neoverse-V1, and its SME emulation is wrong, below).

``--repro`` adds the minimal reproduction of the aarch64 ``max`` error: one
dynamically quantised 768 x 768 MatMul, under qemu 7.2 ``max``, ``max,sme=off``
and qemu 10 ``max``.

Needs root (apt-get), Debian's archive and PyPI. Usage:
    python benchmarks/device_parity.py [--bundle B] [--work /tmp/ufd-devices] [--repro]
Writes benchmarks/results/device_parity.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import aarch64_check  # noqa: E402 - the arm64 rootfs and wheels

VERIFY = [
    "-c",
    "import sys; from ufd.cli.bundle import main; sys.argv[0] = 'ufd-bundle'; main()",
    "verify",
    "--parity",
    "--json",
    "--provider",
    "cpu",
]
ARM_CPUS = ("cortex-a76", "neoverse-n1", "neoverse-v1", "max")
REPRO_RUN = """
import sys, numpy as np, onnxruntime as ort
x, w = np.load(sys.argv[1] + "/x.npy"), np.load(sys.argv[1] + "/w.npy")
y = ort.InferenceSession(sys.argv[1] + "/q.onnx", providers=["CPUExecutionProvider"]).run(
    None, {"x": x})[0]
ref = x @ w
cos = (y * ref).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(ref, axis=1)
print(f"{cos.min():.6f} {np.abs(y - ref).max():.4f}")
"""


def repro_graph(folder: Path) -> Path:
    """One dynamically quantised 768 x 768 MatMul (per-channel s8 weights) and its input."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (768, 768)).astype(np.float32)
    x = rng.normal(0, 1, (50, 768)).astype(np.float32)
    np.save(folder / "w.npy", w)
    np.save(folder / "x.npy", x)
    ports = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [50, 768]) for n in "xy"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        ports[:1],
        ports[1:],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "f.onnx"
    )
    quantize_dynamic(
        folder / "f.onnx", folder / "q.onnx", weight_type=QuantType.QInt8, per_channel=True
    )
    return folder


def run(cmd: list[str], env: dict | None = None, timeout: int = 3600) -> str:
    print("+", " ".join(str(c) for c in cmd[:8]), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode not in (0, 1):
        raise SystemExit(f"failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout


def qemu10(work: Path) -> Path:
    """qemu 10's user-mode emulators from bookworm-backports, unpacked into ``work``."""
    folder = work / "qemu10"
    binary = folder / "usr/bin/qemu-aarch64"
    if binary.exists():
        return folder / "usr/bin"
    folder.mkdir(parents=True, exist_ok=True)
    sources = Path("/etc/apt/sources.list.d/ufd-backports.list")
    if not sources.exists():
        sources.write_text("deb http://deb.debian.org/debian bookworm-backports main\n")
        run(["apt-get", "update", "-q"])
    run(["apt-get", "download", "-t", "bookworm-backports", "qemu-user"], env=None)
    for deb in Path.cwd().glob("qemu-user_*.deb"):
        run(["dpkg-deb", "-x", str(deb), str(folder)])
        deb.unlink()
    return folder / "usr/bin"


def hosts(args: argparse.Namespace) -> list[tuple[str, list[str], dict]]:
    """(name, python command, environment) per CPU."""
    base = {"PATH": os.environ["PATH"], "HOME": str(args.work)}
    found = [("x86-64 native", [sys.executable], base)]
    x86 = shutil.which("qemu-x86_64")
    if x86 is None:
        run(["apt-get", "install", "-y", "-q", "qemu-user"])
        x86 = shutil.which("qemu-x86_64")
    found.append(("x86-64 Haswell-v4", [x86, "-cpu", "Haswell-v4", sys.executable], base))
    root = aarch64_check.rootfs(args.arm)
    packages = aarch64_check.site(args.arm)
    arm = str(qemu10(args.work) / "qemu-aarch64")
    python = ["-L", str(root), str(root / "usr/bin/python3.11")]
    env = base | {"PYTHONPATH": str(packages)}
    found += [(f"aarch64 {cpu}", [arm, "-cpu", cpu, *python], env) for cpu in ARM_CPUS]
    return found


def measure(args: argparse.Namespace) -> dict:
    results = {}
    for name, python, env in hosts(args):
        cache = args.work / "cache" / name.replace(" ", "-")
        shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        out = run([*python, *VERIFY, str(args.bundle)], env | {"UFD_CACHE_DIR": str(cache)})
        report = json.loads(out[out.index("{") :])
        report["seconds"] = round(time.perf_counter() - started, 1)
        results[name] = report
        print(name, "->", report["auto"], flush=True)
    return results


def repro(args: argparse.Namespace) -> dict:
    root, packages = aarch64_check.rootfs(args.arm), aarch64_check.site(args.arm)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(packages)}
    graph = str(repro_graph(args.work / "repro"))
    python = ["-L", str(root), str(root / "usr/bin/python3.11"), "-c", REPRO_RUN, graph]
    q7 = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
    q10 = str(qemu10(args.work) / "qemu-aarch64")
    cases = {
        "qemu 7.2 -cpu max": [q7, "-cpu", "max"],
        "qemu 7.2 -cpu max,sme=off": [q7, "-cpu", "max,sme=off"],
        "qemu 7.2 -cpu max,sve=off": [q7, "-cpu", "max,sve=off"],
        "qemu 10 -cpu max": [q10, "-cpu", "max"],
        "x86-64 native": [],
    }
    found = {}
    for name, qemu in cases.items():
        command = [sys.executable, "-c", REPRO_RUN, graph] if not qemu else [*qemu, *python]
        cosine, error = run(command, env if qemu else None).split()
        found[name] = {"min_cosine": float(cosine), "max_abs_error": float(error)}
        print(name, found[name], flush=True)
    return found


def _cell(graph: dict | None) -> str:
    if graph is None:
        return "-"
    mark = "ok" if graph["ok"] else "FAILS"
    return f"{graph['min_feature_cosine']:.5f} / {graph['max_abs_logit']:.4f} {mark}"


def markdown(results: dict, repro_results: dict | None) -> str:
    lines = [
        "| CPU | int8 class | auto takes | int8 cosine / abs dlogit | int8-portable | fp32 | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, report in results.items():
        cells = [_cell(report["graphs"].get(p)) for p in ("int8", "int8-portable", "fp32")]
        lines.append(
            f"| {name} | {report['host']['int8']} | {report['auto']} | {' | '.join(cells)} | "
            f"{report['seconds']} |"
        )
    if repro_results:
        lines += [
            "",
            "| one quantised MatMul (768x768) | min cosine | max abs error |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {r['min_cosine']:.6f} | {r['max_abs_error']:.4f} |"
            for name, r in repro_results.items()
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="default: a tiny bundle made here")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-devices"))
    parser.add_argument("--arm", type=Path, default=Path("/tmp/ufd-aarch64"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--repro", action="store_true", help="the minimal aarch64 reproduction")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.arm.mkdir(parents=True, exist_ok=True)
    if args.bundle is None:
        args.bundle = aarch64_check.tiny_bundle(args.work)[0]
    results = measure(args)
    found = repro(args) if args.repro else None
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"bundle": str(args.bundle), "hosts": results, "repro": found}
    (args.out / "device_parity.json").write_text(json.dumps(record, indent=2))
    (args.out / "device_parity.md").write_text(markdown(results, found))
    print(markdown(results, found))


if __name__ == "__main__":
    main()
