"""torch -> ONNX for the visual encoder and the linear head (dynamic batch axis).

Uses the TorchScript exporter (``dynamo=False``) with ``dynamic_axes``: the dynamo
exporter silently specialises the batch dimension (pytorch#157621). The fused
MultiheadAttention fastpath is switched off while exporting, since the
TorchScript exporter cannot export ``aten::_native_multi_head_attention``.
Encoders are written with fused self-attention by default (:mod:`ufd.export.graph.attention`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch

from ufd.export.graph.attention import MS_DOMAIN, fuse_self_attention
from ufd.export.graph.class_token import keep_class_token_only
from ufd.runtime.errors import ExportError

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
ENCODER_INPUT, ENCODER_OUTPUT = "pixels", "features"
HEAD_INPUT, HEAD_OUTPUT = "features", "logits"


@contextlib.contextmanager
def _export_mode() -> Iterator[None]:
    """No grad, no MHA fastpath, exporter warnings silenced."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def export_encoder(
    visual: torch.nn.Module,
    path: Path,
    image_size: int,
    opset: int = DEFAULT_OPSET,
    fuse_attention: bool = True,
    dynamic_size: bool = False,
) -> bool:
    """Write the visual encoder as ONNX: ``pixels`` (N,3,S,S) -> ``features`` (N,D).

    Args:
        visual: the torch visual tower (not modified).
        path: where to write the graph.
        image_size: input side in pixels (with ``dynamic_size``: the example's).
        opset: ONNX opset.
        fuse_attention: write self-attention as onnxruntime's fused
            ``com.microsoft.MultiHeadAttention`` (see :mod:`ufd.export.graph.attention`)
            and compute only the class token in the last block
            (:mod:`ufd.export.graph.class_token`).
        dynamic_size: height and width are dynamic axes too (``whole`` bundles).

    Returns:
        Whether the written graph uses the fused attention op.
    """
    fused = 0
    if fuse_attention:
        visual, fused = fuse_self_attention(visual)
        if not fused:
            logger.info("no fusable self-attention found; exporting attention as plain ops")
        elif any([keep_class_token_only(tower) for tower in _vision_towers(visual)]):
            logger.info("the last block computes the class token only")
    example = torch.zeros(2, 3, image_size, image_size)
    custom = {MS_DOMAIN: 1} if fused else None
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    with _unfused_sdpa(visual):
        _export(visual, example, path, ENCODER_INPUT, ENCODER_OUTPUT, opset, custom, axes)
    return fused > 0


@contextlib.contextmanager
def _unfused_sdpa(model: torch.nn.Module) -> Iterator[None]:
    """Timm attention left unfused writes its plain-ops path while exporting.

    The tracing exporter hands ``is_causal`` to ``F.scaled_dot_product_attention``
    as a tensor, which it refuses (timm's Eva: PE, DINOv3); timm's own switch
    ``fused_attn`` selects the same computation in plain ops.
    """
    switched = [m for m in model.modules() if getattr(m, "fused_attn", None) is True]
    for module in switched:
        module.fused_attn = False
    try:
        yield
    finally:
        for module in switched:
            module.fused_attn = True


AGGREGATOR_INPUT, AGGREGATOR_OUTPUT = "tiles", "features"


def export_aggregator(module: torch.nn.Module, dim: int, path: Path, opset: int) -> None:
    """Write a tiles -> image-feature module as ONNX: (1, L, d) -> (1, D), L dynamic."""
    example = torch.randn(1, 5, dim, generator=torch.Generator().manual_seed(0))
    axes = {1: "tiles"}
    _export(module, example, path, AGGREGATOR_INPUT, AGGREGATOR_OUTPUT, opset, None, axes, {})


def _vision_towers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """open_clip vision towers in ``module`` (itself, or one inside a detector's encoder)."""
    return [
        m
        for m in module.modules()
        if hasattr(getattr(m, "transformer", None), "resblocks") and hasattr(m, "conv1")
    ]


def export_linear_head(linear: torch.nn.Linear, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """Write the head as ONNX: ``features`` (N,D) -> ``logits`` (N,1)."""
    export_feature_head(linear, linear.in_features, path, opset)


def export_feature_head(
    head: torch.nn.Module, dim: int, path: Path, opset: int = DEFAULT_OPSET
) -> None:
    """Write any features -> logit module as ONNX: ``features`` (N,D) -> ``logits`` (N,1)."""
    example = torch.randn(2, dim, generator=torch.Generator().manual_seed(0))
    _export(head, example, path, HEAD_INPUT, HEAD_OUTPUT, opset)


def _export(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_name: str,
    opset: int,
    custom_opsets: dict[str, int] | None = None,
    input_axes: dict[int, str] | None = None,
    output_axes: dict[int, str] | None = None,
) -> None:
    module = module.eval()
    input_axes = {0: "batch"} if input_axes is None else input_axes
    output_axes = {0: "batch"} if output_axes is None else output_axes
    try:
        with _export_mode():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: input_axes, output_name: output_axes},
                opset_version=opset,
                custom_opsets=custom_opsets,
                do_constant_folding=True,
                dynamo=False,
            )
        check_graph(path)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"ONNX export of {path.name} failed: {e}") from e
    logger.info("exported %s (%.1f MB)", path.name, path.stat().st_size / 1e6)


def check_graph(path: Path) -> None:
    """Run the ONNX checker on a saved graph (by path, so >2 GB graphs work).

    Raises:
        ExportError: the checker rejects the graph.
    """
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except Exception as e:
        raise ExportError(f"ONNX checker rejected {path.name}: {e}") from e
