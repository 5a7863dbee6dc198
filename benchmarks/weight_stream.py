"""Is this machine in its slow state? ViT-L-14's int8 projections vs the MatMul peak.

On the dev VM the same int8 ViT-L-14 graph runs ~250 ms in some minutes and
~325 ms in others. This script separates the machine from the graph: in one
process it alternates (a) the 96 int8 projections of ViT-L-14 (48 pairs of
1024x4096 and 4096x1024 weights, ~400 MB, M = 257 tokens, dynamic int8 as the
bundle runs them) and (b) the 4096 x 4096 int8 MatMul that ufd-bench uses as
the peak, and prints both in GMAC/s every few seconds.

Usage:
    python benchmarks/weight_stream.py [--seconds 120]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

TOKENS, WIDTH, MLP, LAYERS, PEAK_N = 257, 1024, 4096, 48, 4096


def int8_session(
    folder: Path, name: str, weights: list[np.ndarray], rows: int
) -> ort.InferenceSession:
    """A chain of MatMuls ``x @ w0 @ w1 ...`` (``rows`` input rows), dynamically quantised."""
    nodes, inputs = [], "x"
    for i in range(len(weights)):
        output = "y" if i == len(weights) - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [inputs, f"w{i}"], [output]))
        inputs = output
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, weights[0].shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, weights[-1].shape[1]])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, folder / f"{name}.onnx", save_as_external_data=True)
    quantize_dynamic(
        folder / f"{name}.onnx",
        folder / f"{name}8.onnx",
        per_channel=True,
        weight_type=QuantType.QInt8,
        use_external_data_format=True,
    )
    return ort.InferenceSession(folder / f"{name}8.onnx", providers=["CPUExecutionProvider"])


def gmacs(
    session: ort.InferenceSession, x: np.ndarray, macs: float, repeats: int, best: bool
) -> float:
    """GMAC/s of ``session`` on ``x``: best or median of ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return macs / (min(times) if best else float(np.median(times))) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shapes = [(WIDTH, MLP), (MLP, WIDTH)] * LAYERS
    chain_weights = [(rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32) for s in shapes]
    peak_weight = [(rng.normal(size=(PEAK_N, PEAK_N)) * 0.02).astype(np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        chain = int8_session(Path(tmp), "chain", chain_weights, TOKENS)
        peak = int8_session(Path(tmp), "peak", peak_weight, PEAK_N)
    del chain_weights, peak_weight
    chain_x = rng.normal(size=(TOKENS, WIDTH)).astype(np.float32)
    peak_x = rng.normal(size=(PEAK_N, PEAK_N)).astype(np.float32)
    chain_macs = float(TOKENS * WIDTH * MLP * 2 * LAYERS)
    print("ViT-L-14 projections (median of 4) | 4096^2 peak (best of 3), GMAC/s")
    end = time.time() + args.seconds
    while time.time() < end:
        projections = gmacs(chain, chain_x, chain_macs, 4, best=False)
        matmul = gmacs(peak, peak_x, float(PEAK_N) ** 3, 3, best=True)
        print(f"{projections:6.0f} | {matmul:6.0f}", flush=True)


if __name__ == "__main__":
    main()
