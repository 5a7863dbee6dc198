"""Which MatMuls should stay fp32 in an int8 encoder? Error and speed per group.

For a bundle's fp32 encoder, quantises every MatMul to dynamic int8 (per
channel) except one group at a time, and reports against fp32 on a folder of
images: max and mean |delta logit| through the bundle's head, the lowest
feature cosine, and batch-1 p50 latency. Groups are named by open_clip module
path: qkv, attn_out, mlp_in, mlp_out, proj (the final projection: what ufd
keeps fp32), one_row (every MatMul reading one row per image), first_block,
last_block. With random-init weights the error figures only rank the groups
for that checkpoint; run it on real weights before relying on it.

Usage:
    python benchmarks/int8_sensitivity.py BUNDLE IMAGE_DIR [--groups none,proj,one_row]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from ufd.export.graph.precision import output_projections
from ufd.runtime import Detector
from ufd.runtime.bench.graph_shapes import node_shapes
from ufd.runtime.io.inputs import expand_inputs


def groups(names: list[str], fp32: Path) -> dict[str, list[str]]:
    """MatMul node names kept fp32, per group."""
    last = max(int(m.group(1)) for n in names if (m := re.search(r"resblocks\.(\d+)/", n)))
    patterns = {
        "qkv": r"attn/MatMul$|resblocks\.\d+/MatMul(_1)?$",
        "attn_out": r"out_proj/MatMul$",
        "mlp_in": r"c_fc/MatMul$",
        "mlp_out": r"c_proj/MatMul$",
        "first_block": r"resblocks\.0/",
        "last_block": rf"resblocks\.{last}/",
    }
    chosen = {"none": []} | {g: [n for n in names if re.search(p, n)] for g, p in patterns.items()}
    shapes = node_shapes(fp32, ("MatMul",))
    one_row = [
        n.name
        for n in shapes.nodes
        if n.input[1] in shapes.weights and int(np.prod(shapes.of(n.input[0])[:-1])) == 1
    ]
    return chosen | {"proj": output_projections(fp32), "one_row": one_row}


def run(path: Path, pixels: np.ndarray, head: ort.InferenceSession) -> tuple:
    """Features, logits and batch-1 p50 seconds of encoder graph ``path``."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = np.concatenate([session.run(None, {"pixels": p[None]})[0] for p in pixels])
    times = []
    for _ in range(8):
        start = time.perf_counter()
        session.run(None, {"pixels": pixels[:1]})
        times.append(time.perf_counter() - start)
    logits = head.run(None, {"features": features})[0].ravel()
    return features, logits, float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--groups", default=None, help="comma-separated subset (default: all)")
    args = parser.parse_args()
    detector = Detector.open(args.bundle, precision="fp32", provider="cpu")
    fp32 = args.bundle / detector.bundle.manifest.encoder("fp32").path
    head = ort.InferenceSession(str(args.bundle / "head.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.stack([detector.prepare(item.path) for item in expand_inputs([args.images])])
    ref_features, ref_logits, ref_time = run(fp32, pixels, head)
    names = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul"]
    spread = f"logit std {ref_logits.std():.3f}, {len(pixels)} images"
    print(f"fp32: p50 {ref_time * 1e3:.1f} ms, {spread}")
    print("| kept fp32 | MatMuls | max abs dlogit | mean | min feature cosine | p50 ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        chosen = groups(names, fp32)
        wanted = args.groups.split(",") if args.groups else list(chosen)
        for group in wanted:
            keep = chosen[group]
            out = Path(tmp) / f"{group}.onnx"
            quantize_dynamic(
                fp32,
                out,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep,
            )
            features, logits, seconds = run(out, pixels, head)
            cosine = np.sum(features * ref_features, 1) / (
                np.linalg.norm(features, axis=1) * np.linalg.norm(ref_features, axis=1)
            )
            error = np.abs(logits - ref_logits)
            print(
                f"| {group} | {len(keep)} | {error.max():.4f} | {error.mean():.4f} "
                f"| {cosine.min():.5f} | {seconds * 1e3:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
