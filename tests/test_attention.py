"""Fused self-attention: same numbers as open_clip, one onnxruntime op per block."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import TINY_MODEL

from ufd.export.graph.attention import FusedSelfAttention, fuse_self_attention
from ufd.export.graph.onnx_export import export_encoder


@pytest.fixture(scope="module")
def tiny_visual() -> torch.nn.Module:
    import open_clip

    import ufd.export.models  # noqa: F401 - registers the tiny model config

    torch.manual_seed(7)
    return open_clip.create_model(TINY_MODEL).visual.eval()


def _op_types(path: Path) -> list[str]:
    return [
        f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in onnx.load(path).graph.node
    ]


def test_fusion_swaps_every_block_and_keeps_the_numbers(tiny_visual: torch.nn.Module) -> None:
    fused, count = fuse_self_attention(tiny_visual)
    blocks = tiny_visual.transformer.resblocks
    assert count == len(blocks) == 2
    assert all(isinstance(b.attn, FusedSelfAttention) for b in fused.transformer.resblocks)
    assert all(isinstance(b.attn, torch.nn.MultiheadAttention) for b in blocks)  # a copy
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), tiny_visual(x).numpy(), atol=1e-5)


def test_fused_attention_refuses_what_it_cannot_compute(tiny_visual: torch.nn.Module) -> None:
    attn = FusedSelfAttention(tiny_visual.transformer.resblocks[0].attn)
    x = torch.randn(1, 5, 64)
    with pytest.raises(NotImplementedError):
        attn(x, x, x, attn_mask=torch.zeros(5, 5))
    with pytest.raises(NotImplementedError):
        attn(x, x.clone(), x)


def test_fused_and_plain_graphs_agree(tmp_path: Path, tiny_visual: torch.nn.Module) -> None:
    fused_path, plain_path = tmp_path / "fused.onnx", tmp_path / "plain.onnx"
    assert export_encoder(tiny_visual, fused_path, 224, fuse_attention=True)
    assert not export_encoder(tiny_visual, plain_path, 224, fuse_attention=False)
    fused_ops, plain_ops = _op_types(fused_path), _op_types(plain_path)
    assert fused_ops.count("com.microsoft:MultiHeadAttention") == 2
    assert "Softmax" not in fused_ops and "Softmax" in plain_ops
    assert not any(":" in op for op in plain_ops)  # standard ONNX only
    assert len(fused_ops) < len(plain_ops) / 2

    x = np.random.default_rng(1).normal(size=(3, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        torch.backends.mha.set_fastpath_enabled(False)
        expected = tiny_visual(torch.from_numpy(x)).numpy()
    for path in (fused_path, plain_path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch in (x[:1], x):  # dynamic batch axis survives the custom op
            out = session.run(None, {"pixels": batch})[0]
            np.testing.assert_allclose(out, expected[: len(batch)], atol=1e-5)


def test_bundle_records_fused_attention(tiny_bundle: Path) -> None:
    encoders = json.loads((tiny_bundle / "manifest.json").read_text())["encoders"]
    assert set(encoders) == {"fp32", "fp16", "int8", "int8-portable"}
    for name, entry in encoders.items():
        assert entry["attention"] == "fused", name
        assert "com.microsoft:MultiHeadAttention" in _op_types(tiny_bundle / entry["file"])


def test_mac_count_sees_inside_the_fused_op(tmp_path: Path, tiny_visual: torch.nn.Module) -> None:
    from ufd.runtime.bench.measure import count_macs

    width, tokens, layers, patch_pixels = 64, 7 * 7 + 1, 2, 3 * 32 * 32
    per_block = tokens * width * (3 * width + width + 4 * width + 4 * width)  # projections, MLP
    per_block += 2 * tokens * tokens * width  # q k^T and attention x v
    # class token only in the last block: its q, attention, out_proj and MLP for 1 token
    last_block = width * width + tokens * width * 2 * width + 2 * tokens * width
    last_block += width * width + 8 * width * width
    outside = 49 * width * patch_pixels + width * 768  # patch conv, final projection
    expected = {
        False: outside + layers * per_block,
        True: outside + (layers - 1) * per_block + last_block,
    }
    for fuse in (True, False):
        path = tmp_path / f"{fuse}.onnx"
        export_encoder(tiny_visual, path, 224, fuse_attention=fuse)
        assert count_macs(path) == expected[fuse], fuse


def test_class_token_pruning_only_where_the_class_token_is_the_output(
    tiny_visual: torch.nn.Module,
) -> None:
    from ufd.export.graph.class_token import ClassTokenBlock, keep_class_token_only

    fused, _ = fuse_self_attention(tiny_visual)
    assert keep_class_token_only(fused)
    assert isinstance(fused.transformer.resblocks[-1], ClassTokenBlock)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), tiny_visual(x).numpy(), atol=1e-5)

    pooled_by_mean, _ = fuse_self_attention(tiny_visual)
    pooled_by_mean.pool_type = "avg"  # every token's output is needed
    assert not keep_class_token_only(pooled_by_mean)
    plain = copy.deepcopy(tiny_visual)  # attention not fused: left alone
    assert not keep_class_token_only(plain)
