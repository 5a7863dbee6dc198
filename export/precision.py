"""Derive reduced-precision encoder graphs from the fp32 one.

* ``int8``: onnxruntime dynamic quantisation of MatMul weights (QInt8,
  per-channel); activations are quantised at run time. The fast CPU path
  (static QDQ was measured slower on this CPU, see RUNTIME-NOTES).
* ``fp16``: onnxruntime's float16 converter with fp32 inputs/outputs and
  LayerNormalization kept in fp32 (openai/CLIP#171). For CUDA; slow on CPU.

Both are validated against torch fp32 by :mod:`ufd.export.validate`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx

from ufd.export.onnx_export import check_graph
from ufd.runtime.errors import ExportError

logger = logging.getLogger(__name__)

FP16_KEEP_FP32_OPS = ("LayerNormalization",)


def make_int8_dynamic(src: Path, dst: Path) -> None:
    """Write a dynamically quantised (int8 MatMul weights) copy of graph ``src``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )
    except Exception as e:
        raise ExportError(f"int8 quantisation of {src.name} failed: {e}") from e
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
            )
        wrapped = OnnxModel(half)
        wrapped.topological_sort()  # the converter appends its input casts last
        onnx.save(wrapped.model, str(dst))
    except Exception as e:
        raise ExportError(f"fp16 conversion of {src.name} failed: {e}") from e
    check_graph(dst)
