"""Shapes of the tensors around chosen nodes of an encoder graph, for one image.

Static shape inference cannot see through the exporter's dynamic Reshapes, so
the graph is run once on a blank image with every tensor those nodes read or
write exposed as an output. Used to count MACs (:mod:`ufd.runtime.bench.measure`) and
by ``benchmarks/int8_sensitivity.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NodeShapes:
    """The chosen nodes, the shape of each tensor they touch, and the weight names."""

    nodes: list[Any]  # onnx.NodeProto
    shapes: dict[str, list[int]]
    weights: frozenset[str]

    def of(self, name: str) -> list[int] | None:
        """Shape of tensor ``name`` (None when unknown)."""
        return self.shapes.get(name)


def node_shapes(model_path: Path, op_types: tuple[str, ...], image_size: int = 224) -> NodeShapes:
    """Run ``model_path`` once (batch 1) and record the shapes around its ``op_types`` nodes."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(model_path))
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in op_types]
    exposed = {name for n in nodes for name in (*n.input, *n.output) if name}
    exposed -= set(weights) | {o.name for o in model.graph.output}
    for name in sorted(exposed):
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, image_size, image_size), np.float32)
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, {session.get_inputs()[0].name: x})
    shapes = {n: list(v.shape) for n, v in zip(names, values, strict=True)} | weights
    return NodeShapes(nodes, shapes, frozenset(weights))
