"""``ufd-bench``'s engine: latency, throughput, memory and fraction of peak.

Every configuration runs in its own subprocess (:func:`child`)
so that start-up time and peak RSS are its own. The machine's fp32 and int8
MatMul peaks (onnxruntime, 4096 x 4096) are measured in the same run, and each
encoder's MACs are counted from its ONNX graph, so every latency is also a
fraction of what the hardware can do.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MATMUL_N = 4096
MAC_OPS = ("MatMul", "Gemm", "Conv", "MultiHeadAttention")


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99 in milliseconds."""
    ms = np.array(samples) * 1e3
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)}


def count_macs(model_path: Path, image_size: int = 224) -> float:
    """Multiply-accumulates of one image through a float graph.

    Counts MatMul, Gemm, Conv and the two products inside onnxruntime's fused
    ``MultiHeadAttention`` (q k^T and attention x v: 2 * S * L * D each image),
    with shapes from one run (:func:`ufd.runtime.bench.graph_shapes.node_shapes`).
    """
    from ufd.runtime.bench.graph_shapes import node_shapes

    graph = node_shapes(model_path, MAC_OPS, image_size)
    macs = 0.0
    for node in graph.nodes:
        out, a, b = (graph.of(name) for name in (node.output[0], node.input[0], node.input[1]))
        if not out or not a:
            continue
        if node.op_type in ("MatMul", "Gemm"):
            macs += float(np.prod(out)) * a[-1]
        elif node.op_type == "MultiHeadAttention" and b:  # query (B,S,D), key (B,L,D)
            macs += 2.0 * float(np.prod(a)) * b[-2]
        elif b:
            macs += float(np.prod(out)) * float(np.prod(b[1:]))
    return macs


def matmul_peak(dtype: str, repeats: int = 5, provider: str = "cpu") -> float:
    """Sustained onnxruntime GMAC/s of an n^3 MatMul on ``provider``.

    ``dtype``: ``fp32``, ``fp16`` or ``int8`` (dynamic, as the int8 graphs run).
    n = 4096 on the CPU, 8192 on a GPU. The input stays on the device (IO
    binding), so only the product is timed.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ufd.runtime.providers import start_provider
    from ufd.runtime.sessions import OrtSession

    n = MATMUL_N if provider == "cpu" else 2 * MATMUL_N
    float_type = np.float16 if dtype == "fp16" else np.float32
    onnx_type = TensorProto.FLOAT16 if dtype == "fp16" else TensorProto.FLOAT
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(n, n)).astype(float_type), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", onnx_type, [n, n])],
        [helper.make_tensor_value_info("y", onnx_type, [n, n])],
        [weight],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mm.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        if dtype == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(path, Path(tmp) / "mm8.onnx", weight_type=QuantType.QInt8)
            path = Path(tmp) / "mm8.onnx"
        # OrtSession for the provider chain and device only: the input is bound once
        # below and never refilled, which OrtSession.run's binding would do per call
        session = OrtSession(path, start_provider(provider), io_binding=False)
        x = ort.OrtValue.ortvalue_from_numpy(
            rng.normal(size=(n, n)).astype(float_type), session.device, 0
        )
        binding = session.session.io_binding()
        binding.bind_ortvalue_input("x", x)
        binding.bind_output("y", session.device)
        session.session.run_with_iobinding(binding)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            times.append(time.perf_counter() - start)
    return n**3 / min(times) / 1e9


def run_peak(dtype: str, provider: str = "cpu") -> dict[str, Any]:
    """:func:`matmul_peak` as a child-process job."""
    return {"gmacs": matmul_peak(dtype, provider=provider)}


def median_run(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The run whose ``metric`` is the median (the lower middle one for even counts).

    Each run is one fresh process; the chosen run is returned whole (with
    ``rounds_<metric>`` listing every round) so its figures stay consistent.
    """
    ordered = sorted(runs, key=lambda r: r[metric])
    return ordered[(len(ordered) - 1) // 2] | {f"rounds_{metric}": [r[metric] for r in runs]}


def _rss_mb() -> float:
    """This process's peak RSS in MB.

    ``VmHWM`` belongs to the address space made by ``exec``; ``ru_maxrss`` would
    also count the parent's pages inherited at ``fork``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ort(
    bundle: str,
    precision: str,
    batch: int,
    iterations: int,
    threads: int | None,
    provider: str = "cpu",
) -> dict[str, Any]:
    """Encoder (+head) latency of one bundle precision at one batch size."""
    from ufd.runtime import Detector

    start = time.perf_counter()
    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    startup = time.perf_counter() - start
    size = detector.bundle.manifest.model.image_size
    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    detector.logits(detector.features(x))  # warm-up
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        detector.logits(detector.features(x))
        times.append(time.perf_counter() - t)
    return {"startup_s": startup, **percentiles(times), "throughput_ips": batch / np.median(times)}


def run_e2e_ort(
    bundle: str, precision: str, folder: str, threads: int | None, provider: str = "cpu"
) -> dict[str, Any]:
    """End to end on a folder, batch 1: decode + preprocess + encoder + head."""
    from ufd.runtime import Detector
    from ufd.runtime.io.inputs import expand_inputs

    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    items = list(expand_inputs([folder]))
    list(detector.score_batches(items[:2], 1))  # warm-up
    start = time.perf_counter()
    records = [r for batch in detector.score_batches(items, 1) for r in batch]
    elapsed = time.perf_counter() - start
    scored = sum(r.ok for r in records)
    return {"images": scored, "per_image_ms": elapsed / max(scored, 1) * 1e3}


def child(kind: str, **kwargs: Any) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; its JSON result plus peak RSS.

    ``kind`` is a runner of this module (``run_ort``) or ``module:function``.
    """
    module, _, function = kind.rpartition(":")
    module = module or __name__
    code = (
        f"import json, sys, importlib; from ufd.runtime.bench import measure as bench; "
        f"r = importlib.import_module({module!r}).{function}(**json.loads(sys.argv[1])); "
        "r['peak_rss_mb'] = bench._rss_mb(); print('UFD-BENCH' + json.dumps(r))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        if line.startswith("UFD-BENCH"):
            found: dict[str, Any] = json.loads(line[len("UFD-BENCH") :])
            return found
    raise RuntimeError(f"{kind} failed: {out.stderr.strip().splitlines()[-1:]}")
