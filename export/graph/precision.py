"""Derive reduced-precision encoder graphs from the fp32 one.

* ``int8`` (``dynamic``, default): onnxruntime dynamic quantisation of MatMul
  weights (QInt8, per-channel); activations are quantised at run time, per
  tensor. The fast CPU path here. The output projection (the MatMul that
  writes the feature) keeps fp32 in every int8 graph: it reads one row per
  image, so int8 buys it no time, and its rounding error reaches the feature
  undiluted (see :func:`output_projections`).
* ``int8`` (``static``): QDQ with activation ranges calibrated on images
  (``--calibration-dir``); batch-invariant, but slower on this CPU.
* ``fp16``: onnxruntime's float16 converter with fp32 inputs/outputs and
  LayerNormalization kept in fp32 (openai/CLIP#171). For CUDA; slow on CPU.

Both are validated against torch fp32 by :mod:`ufd.export.graph.validate`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from ufd.export.graph.onnx_export import check_graph
from ufd.runtime.errors import ExportError

logger = logging.getLogger(__name__)

FP16_KEEP_FP32_OPS = ("LayerNormalization",)


def output_projections(src: Path) -> list[str]:
    """Names of the weight MatMuls of graph ``src`` that write a graph output.

    For CLIP's visual tower that is the final projection (``x @ proj``) on the
    class token. Measured with ``benchmarks/int8_sensitivity.py`` (random
    weights, 16 JPEGs): keeping it fp32 cut the int8 max |delta logit| by
    40-50 % (ViT-L-14 0.058 -> 0.035, ViT-B-16 0.036 -> 0.018) at no
    measurable latency; also keeping the last block's other class-token
    MatMuls fp32 gained nothing more and added 34 MB to ViT-L-14.
    """
    model = onnx.load(str(src), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and node.input[1] in weights and node.output[0] in outputs
    ]


def module_nodes(src: Path, modules: tuple[str, ...]) -> list[str]:
    """Names of the nodes of graph ``src`` inside the top-level ``modules`` (``/name/...``)."""
    if not modules:
        return []
    model = onnx.load(str(src), load_external_data=False)
    prefixes = tuple(f"/{m}/" for m in modules)
    return [node.name for node in model.graph.node if node.name.startswith(prefixes)]


FIXED_TRANSFORM = "fixed_transform"
"""A detector's module of this name is a fixed signal transform (SPAI's DFT) whose
exactness the detector relies on: none of its nodes is quantised or made fp16."""


def fixed_transforms(src: Path) -> list[str]:
    """Names of the nodes of graph ``src`` inside a :data:`FIXED_TRANSFORM` module."""
    model = onnx.load(str(src), load_external_data=False)
    marker = f"/{FIXED_TRANSFORM}/"
    return [node.name for node in model.graph.node if marker in node.name]


def make_int8_dynamic(src: Path, dst: Path, reduce_range: bool = False) -> None:
    """Write a dynamically quantised (int8 MatMul weights) copy of graph ``src``.

    ``reduce_range``: 7-bit weights. On x86 CPUs without VNNI, onnxruntime sums
    u8 x s8 products in pairs in 16 bits (``vpmaddubsw``), which full-range
    weights overflow (2 x 255 x 127 > 32767); 7-bit ones never do, so the graph
    computes the same numbers on every CPU (``int8-portable``).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        keep = output_projections(src)
        logger.info("int8: the output projection keeps fp32 (%s)", ", ".join(keep) or "none")
        keep += fixed_transforms(src)
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep,
            reduce_range=reduce_range,
        )
    except Exception as e:
        raise ExportError(f"int8 quantisation of {src.name} failed: {e}") from e
    check_graph(dst)


class _PixelReader:
    """Feeds preprocessed calibration images to onnxruntime's static quantiser."""

    def __init__(self, pixels: Sequence[np.ndarray], input_name: str) -> None:
        self._batches = iter([{input_name: p[None]} for p in pixels])

    def get_next(self) -> dict | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        pass


def make_int8_static(
    src: Path,
    dst: Path,
    calibration: Sequence[np.ndarray],
    input_name: str,
    ops: tuple[str, ...] = ("MatMul",),
    reduce_range: bool = False,
    fp32_modules: tuple[str, ...] = (),
) -> None:
    """Write a static QDQ int8 copy of ``src`` calibrated on preprocessed images.

    Weights int8 per channel, activations uint8 (x86), the ``ops`` given (MatMul for
    transformers; Conv too for convolutional detectors, whose dynamic ``ConvInteger``
    is slower than fp32 on CPU), MinMax ranges. Activation scales are fixed, so
    scores do not depend on the batch. ``reduce_range``: 7-bit weights, the same
    numbers on CPUs without VNNI (``int8-portable``). ``fp32_modules``: top-level
    modules left fp32 (:func:`module_nodes`).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    try:
        keep = output_projections(src) + fixed_transforms(src) + module_nodes(src, fp32_modules)
        quantize_static(
            src,
            dst,
            _PixelReader(calibration, input_name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops),
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep,
        )
    except Exception as e:
        raise ExportError(f"static int8 quantisation of {src.name} failed: {e}") from e
    check_graph(dst)


def make_fp16(src: Path, dst: Path) -> None:
    """Write an fp16 copy of graph ``src`` with fp32 inputs, outputs and LayerNorm."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    try:
        model = onnx.load(str(src))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "value truncated to 1e-7" for tiny weights
            half = convert_float_to_float16(
                model,
                keep_io_types=True,
                op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32_OPS],
                node_block_list=fixed_transforms(src),
            )
        wrapped = OnnxModel(half)
        wrapped.topological_sort()  # the converter appends its input casts last
        onnx.save(wrapped.model, str(dst))
    except Exception as e:
        raise ExportError(f"fp16 conversion of {src.name} failed: {e}") from e
    check_graph(dst)


def optimize_in_place(path: Path) -> None:
    """Replace graph ``path`` by onnxruntime's EXTENDED-level optimisation of it.

    EXTENDED fusions (LayerNorm, GELU, MatMul+Add...) are saved so a device
    does not redo them at every start; ALL-level layout transforms are not
    saved, since they tie a graph to the CPU it was optimised on.
    """
    import onnxruntime as ort

    tmp = path.with_name(path.name + ".opt")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp)
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"onnxruntime could not optimise {path.name}: {e}") from e
    tmp.replace(path)
