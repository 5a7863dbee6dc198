"""SPAI's torch modules, shaped from its weights (mever-team/spai ``spai/models``, Apache-2.0).

The tile encoder (:class:`SpaiTileEncoder`: frequency filter, the MFM ViT three
times, the frequency-restoration estimator) and the tile aggregator
(:class:`SpaiAggregator`: cross-attention of a learned query, layer norm), in the
official parameter names so that the checkpoint loads strictly; see
:mod:`ufd.export.detectors.spai` for the semantics.
"""

from __future__ import annotations

import math

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_WIDTH = 64


class Attention(nn.Module):
    """MFM/BEiT attention: bias-free qkv plus learned q and v biases (k's is zero)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention."""
        b, n, _ = x.shape
        bias = None
        if self.q_bias is not None and self.v_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = nn.functional.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    """Pre-norm transformer block (``gamma_1``/``gamma_2`` layer scales when trained so)."""

    def __init__(
        self, dim: int, heads: int, hidden: int, layer_scale: bool, qkv_bias: bool
    ) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))
        self.gamma_1 = nn.Parameter(torch.ones(dim)) if layer_scale else None
        self.gamma_2 = nn.Parameter(torch.ones(dim)) if layer_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """X + attn, x + mlp."""
        attn, mlp = self.attn(self.norm1(x)), None
        x = x + (attn if self.gamma_1 is None else self.gamma_1 * attn)
        mlp = self.mlp(self.norm2(x))
        return x + (mlp if self.gamma_2 is None else self.gamma_2 * mlp)


class PatchEmbed(nn.Module):
    """A stride-``patch`` convolution to tokens."""

    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, tokens, dim)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class SpaiViT(nn.Module):
    """The MFM ViT with ``return_features``: the chosen blocks' patch tokens, stacked."""

    def __init__(self, state: dict[str, torch.Tensor], layers: tuple[int, ...]) -> None:
        super().__init__()
        dim = state["cls_token"].shape[-1]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        self.layers = layers
        self.patch_embed = PatchEmbed(dim, state["patch_embed.proj.weight"].shape[-1])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros_like(state["pos_embed"]))
        layer_scale, qkv_bias = "blocks.0.gamma_1" in state, "blocks.0.attn.q_bias" in state
        heads = max(1, dim // HEAD_WIDTH)
        self.blocks = nn.ModuleList(
            [Block(dim, heads, hidden, layer_scale, qkv_bias) for _ in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, layers, patches, dim)."""
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        kept = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.layers:
                kept.append(x[:, 1:])
        return torch.stack(kept, dim=1)


def dft_matrices(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos and sin parts of the ``size``-point DFT matrix, e^(-2 pi i k n / size), float64."""
    k = torch.arange(size, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(k, k) / size
    return torch.cos(angle), -torch.sin(angle)


class FrequencyFilter(nn.Module):
    """``filter_image_frequencies`` by real matrix products: the low-pass of a square input.

    ``Re(IFFT2(ifftshift(mask) * FFT2(x)))`` with F = C + iS: the spectrum's parts
    ``P = C X C^T - S X S^T`` and ``Q = C X S^T + S X C^T`` (real, imaginary; C, S
    symmetric), masked, and back: ``(C Pm C^T + S Qm C^T + C Qm S^T - S Pm S^T) / N^2``.
    The high-pass is ``x`` minus it (the complementary mask).
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        size = mask.shape[-1]
        cos, sin = dft_matrices(size)
        self.register_buffer("cos", cos.float(), persistent=False)
        self.register_buffer("sin", sin.float(), persistent=False)
        self.register_buffer("cos_n", (cos / size).float(), persistent=False)
        self.register_buffer("sin_n", (sin / size).float(), persistent=False)
        shifted = torch.fft.ifftshift(mask.double(), dim=(-2, -1))
        self.register_buffer("mask", shifted.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The low-pass of (N, C, S, S) images (the 1 / N^2 taken on the way in)."""
        cn, sn = self.cos_n, self.sin_n
        xc, xs = cn @ x, sn @ x
        real = (xc @ cn - xs @ sn) * self.mask
        imag = (xc @ sn + xs @ cn) * self.mask
        c, s = self.cos, self.sin
        return c @ real @ c + s @ imag @ c + c @ imag @ s - s @ real @ s


class Projector(nn.Module):
    """SPAI's ``Projector``: [norm] -> Linear, GELU -> Linear, act -> norm.

    Its dropouts are kept as placeholders so that the checkpoint's indices match.
    """

    def __init__(self, state: dict[str, torch.Tensor], prefix: str, last_gelu: bool) -> None:
        super().__init__()
        first, second = state[f"{prefix}projector.1.weight"], state[f"{prefix}projector.4.weight"]
        with_norm = f"{prefix}norm1.weight" in state
        self.norm1 = nn.LayerNorm(first.shape[1]) if with_norm else nn.Identity()
        self.projector = nn.Sequential(
            nn.Identity(),
            nn.Linear(first.shape[1], first.shape[0]),
            nn.GELU(),
            nn.Identity(),
            nn.Linear(second.shape[1], second.shape[0]),
            nn.GELU() if last_gelu else nn.Identity(),
            nn.Identity(),
        )
        self.norm2 = nn.LayerNorm(second.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The projection."""
        return self.norm2(self.projector(self.norm1(x)))


class FeatureImportance(nn.Module):
    """SPAI's ``FeatureImportanceProjector``: the tile's own branch.

    Its tokens pooled per block (mean and standard deviation), projected, weighted by
    a softmax over blocks, summed, projected again.
    """

    def __init__(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros_like(state[f"{prefix}alpha"]))
        self.proj1 = Projector(state, f"{prefix}proj1.", last_gelu=True)
        self.proj2 = Projector(state, f"{prefix}proj2.", last_gelu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, L, D) -> (B, D)."""
        x = self.proj1(torch.cat([x.mean(dim=2), _std(x, dim=2)], dim=-1))
        return self.proj2((torch.softmax(self.alpha, dim=1) * x).sum(dim=1))


class FrequencyRestoration(nn.Module):
    """SPAI's ``FrequencyRestorationEstimator``, per-block projectors and own branch.

    (B, 6N + D) from the tile's, low-pass and high-pass tokens.
    """

    def __init__(self, state: dict[str, torch.Tensor], blocks: int, last_gelu: bool) -> None:
        super().__init__()
        projectors = [
            Projector(state, f"patch_projector.projectors.{i}.", last_gelu) for i in range(blocks)
        ]
        self.patch_projector = nn.Module()
        self.patch_projector.projectors = nn.ModuleList(projectors)
        self.original_features_processor = FeatureImportance(state, "original_features_processor.")

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        projectors = self.patch_projector.projectors
        return torch.stack([p(x[:, i]) for i, p in enumerate(projectors)], dim=1)

    def forward(self, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Each (B, N, L, D) -> (B, 6N + proj)."""
        x, low, high = self._project(x), self._project(low), self._project(high)
        similarities = [_cosine(x, low), _cosine(x, high), _cosine(low, high)]
        pooled = []
        for sim in similarities:
            pooled += [sim.mean(dim=-1), _std(sim, dim=-1)]
        return torch.cat([*pooled, self.original_features_processor(x)], dim=1)


class SpaiTileEncoder(nn.Module):
    """``MFViT``: (N, 3, S, S) tiles in [0, 1] -> (N, 6 * blocks + proj) tile features."""

    def __init__(
        self,
        state: dict[str, torch.Tensor],
        mask: torch.Tensor,
        layers: tuple[int, ...],
        last_gelu: bool,
    ) -> None:
        super().__init__()
        self.vit = SpaiViT(_sub(state, "vit."), layers)
        self.features_processor = FrequencyRestoration(
            _sub(state, "features_processor."), len(layers), last_gelu
        )
        self.fixed_transform = FrequencyFilter(mask)  # kept fp32: see FIXED_TRANSFORM
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Filter, clamp, normalise; the ViT on all three at once; the estimator."""
        low = self.fixed_transform(x)
        high = torch.clamp(x - low, 0.0, 1.0)
        low = torch.clamp(low, 0.0, 1.0)
        views = (torch.cat([x, low, high]) - self.mean) / self.std
        tokens = self.vit(views)
        n = x.shape[0]
        return self.features_processor(tokens[:n], tokens[n : 2 * n], tokens[2 * n :])


class SpaiAggregator(nn.Module):
    """``PatchBasedMFViT.patches_attention`` then its ``norm``: (1, L, D) -> (1, D)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        heads, _, head_dim = state["patch_aggregator"].shape
        width, dim = state["to_kv.weight"].shape[0] // 2, state["to_kv.weight"].shape[1]
        self.heads, self.scale = heads, head_dim**-0.5
        self.to_kv = nn.Linear(dim, width * 2, bias=False)
        self.patch_aggregator = nn.Parameter(torch.zeros(heads, 1, head_dim))
        self.to_out = nn.Sequential(nn.Linear(width, dim, bias=False))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-attention of the learned query over the tiles, then the layer norm."""
        b, n, _ = x.shape
        k, v = self.to_kv(x).chunk(2, dim=-1)
        k = k.reshape(b, n, self.heads, -1).transpose(1, 2)
        v = v.reshape(b, n, self.heads, -1).transpose(1, 2)
        attn = ((self.patch_aggregator @ k.transpose(-1, -2)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, 1, -1)
        return self.norm(self.to_out(out)[:, 0])


class ClassificationHead(nn.Module):
    """SPAI's MLP head (ReLU; dropouts as placeholders): (N, D) -> (N, 1)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        shapes = [state[f"head.{i}.weight"].shape for i in (0, 3, 6)]
        self.head = nn.Sequential(
            nn.Linear(shapes[0][1], shapes[0][0]),
            nn.ReLU(),
            nn.Identity(),
            nn.Linear(shapes[1][1], shapes[1][0]),
            nn.ReLU(),
            nn.Identity(),
            nn.Linear(shapes[2][1], shapes[2][0]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logit(s)."""
        return self.head(x)


def _std(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Bessel-corrected standard deviation (``torch.std``'s default), in exportable ops."""
    mean = x.mean(dim, keepdim=True)
    return torch.sqrt(((x - mean) ** 2).sum(dim) / (x.shape[dim] - 1))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``F.cosine_similarity(a, b, dim=-1)`` (eps 1e-8)."""
    norms = torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)
    return (a * b).sum(-1) / torch.clamp(norms, min=1e-8)


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, without it."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
