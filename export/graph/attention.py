"""Export CLIP self-attention as one onnxruntime ``MultiHeadAttention`` op.

The TorchScript exporter writes ``nn.MultiheadAttention`` as ~40 small ops per
block (shape arithmetic, Gather, 8 Transposes, MatMul, Softmax), and
onnxruntime's transformer optimizer does not fuse that pattern for open_clip
graphs (onnxruntime#21208). Before export, :func:`fuse_self_attention` swaps
each self-attention module for :class:`FusedSelfAttention`: the same weights,
the same maths in torch, but written to ONNX as

    MatMul(in_proj) + Add -> Split -> com.microsoft.MultiHeadAttention -> MatMul(out_proj) + Add

so the projections stay plain MatMuls (int8-quantisable) and attention runs in
one kernel (CPU and CUDA, fp32 and fp16). The swap works on a copy; the
model handed in is not changed.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"


class _MultiHeadAttentionOp(torch.autograd.Function):
    """softmax(q k^T / sqrt(h)) v over ``num_heads`` heads: q (B, S, D), k and v (B, L, D)."""

    @staticmethod
    def forward(ctx, q, k, v, num_heads: int):
        batch, seq, dim = q.shape
        heads = [t.unflatten(-1, (num_heads, dim // num_heads)).transpose(1, 2) for t in (q, k, v)]
        out = F.scaled_dot_product_attention(*heads)
        return out.transpose(1, 2).reshape(batch, seq, dim)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int):
        out = g.op(f"{MS_DOMAIN}::MultiHeadAttention", q, k, v, num_heads_i=num_heads)
        out.setType(q.type())
        return out


class FusedSelfAttention(nn.Module):
    """Drop-in for a batch-first, mask-free ``nn.MultiheadAttention`` (self-attention)."""

    def __init__(self, source: nn.MultiheadAttention) -> None:
        """Take the projection weights of ``source`` (shared, not copied)."""
        super().__init__()
        self.num_heads = source.num_heads
        self.in_proj_weight = source.in_proj_weight
        self.in_proj_bias = source.in_proj_bias
        self.out_proj = source.out_proj

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        """Self-attention of ``query``; same call signature as ``nn.MultiheadAttention``."""
        if attn_mask is not None or need_weights or key is not query or value is not query:
            raise NotImplementedError("FusedSelfAttention handles mask-free self-attention only")
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = torch.split(qkv, self.out_proj.in_features, dim=-1)
        return self.out_proj(_MultiHeadAttentionOp.apply(q, k, v, self.num_heads)), None

    def attend(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attention of ``query`` tokens over ``context`` tokens (same weights).

        Used when only some tokens' outputs are needed: ``query`` (B, S, D) is
        projected to q alone, ``context`` (B, L, D) to k and v.
        """
        dim = self.out_proj.in_features  # a Python int: the weight slices fold to constants
        weight, bias = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, weight[:dim], bias[:dim])
        k, v = torch.split(F.linear(context, weight[dim:], bias[dim:]), dim, dim=-1)
        return self.out_proj(_MultiHeadAttentionOp.apply(q, k, v, self.num_heads))


def _fusable(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.MultiheadAttention)
        and module.batch_first
        and module._qkv_same_embed_dim
        and module.in_proj_bias is not None
        and module.bias_k is None
        and not module.add_zero_attn
        and module.dropout == 0.0
    )


class FusedTimmAttention(nn.Module):
    """Drop-in for timm's ViT ``Attention`` (no q/k norm, no gate): the same op as above."""

    def __init__(self, source: nn.Module) -> None:
        """Take the projections of ``source`` (shared, not copied)."""
        super().__init__()
        self.num_heads = source.num_heads
        self.qkv = source.qkv
        self.proj = source.proj

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """Self-attention of ``x`` (B, N, D)."""
        if attn_mask is not None or is_causal:
            raise NotImplementedError("FusedTimmAttention handles mask-free self-attention only")
        q, k, v = torch.split(self.qkv(x), self.proj.in_features, dim=-1)
        return self.proj(_MultiHeadAttentionOp.apply(q, k, v, self.num_heads))


def _timm_fusable(module: nn.Module | None) -> bool:
    """Timm's plain ViT attention: qkv in one Linear, no per-head norms, no gate, no norm."""
    return (
        type(module).__name__ == "Attention"
        and isinstance(getattr(module, "qkv", None), nn.Linear)
        and isinstance(getattr(module, "proj", None), nn.Linear)
        and all(isinstance(getattr(module, n, None), nn.Identity) for n in ("q_norm", "k_norm"))
        and isinstance(getattr(module, "norm", nn.Identity()), nn.Identity)
        and getattr(module, "gate", None) is None
        and module.qkv.out_features == 3 * module.proj.in_features
    )


def fuse_self_attention(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose fusable attention modules are fused (one onnxruntime op).

    Only modules whose call is known to be mask-free self-attention are
    swapped: ``attn`` of open_clip's ``ResidualAttentionBlock`` (the attention
    pooler and text tower are left alone) and of timm's ViT ``Block``.

    Returns:
        The copy and how many modules were swapped.
    """
    fused = copy.deepcopy(model)
    count = 0
    for parent in fused.modules():
        kind = type(parent).__name__
        attention = getattr(parent, "attn", None)
        if kind == "ResidualAttentionBlock" and not hasattr(parent, "ln_1_kv"):
            if _fusable(attention):
                parent.attn = FusedSelfAttention(attention)
                count += 1
        elif kind == "Block" and _timm_fusable(attention):
            parent.attn = FusedTimmAttention(attention)
            count += 1
    logger.debug("fused %d self-attention blocks", count)
    return fused, count
