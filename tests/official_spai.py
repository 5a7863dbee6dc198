"""An independent rebuild of SPAI's official inference (mever-team/spai, Apache-2.0).

Written from ``spai/models/sid.py`` (``PatchBasedMFViT``, ``MFViT``,
``FrequencyRestorationEstimator``, ``FeatureSpecificProjector``, ``Projector``,
``FeatureImportanceProjector``, ``ClassificationHead``), ``vision_transformer.py``,
``filters.py``, ``utils.patchify_image`` and the test transform of
``data/data_finetune.py`` (``PadIfNeeded`` of albumentations 1.4, whose default
border is ``cv2.BORDER_REFLECT_101``; ``Normalize(0, 1)``), with the official
parameter names, so that ``{'model': state_dict()}`` is a checkpoint in SPAI's
format. Its frequency filter is ``torch.fft``, its similarities
``F.cosine_similarity``, its standard deviations ``torch.std``: none of ufd's
rewrites. Shrunk (width, depth, projection sizes) for the tests.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import fft, nn
from torchvision.transforms.functional import five_crop

IMAGENET_MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def circular_mask(size: int, radius: int) -> torch.Tensor:
    """``filters.generate_circular_mask``."""
    values = torch.arange(0, size // 2, dtype=torch.float)
    values = torch.cat([values.flip(dims=(0,)), values])
    xs = values.unsqueeze(0).expand(size, -1)
    coords = torch.stack([xs, xs.t()], dim=2)
    return torch.where(torch.linalg.vector_norm(coords, dim=-1) < radius, 1, 0)


def filter_frequencies(image: torch.Tensor, mask: torch.Tensor):
    """``filters.filter_image_frequencies`` (``fftshift`` over every dimension, as there)."""
    spectrum = fft.fftshift(fft.fft2(image))
    low = fft.ifft2(fft.ifftshift(spectrum * mask)).real
    high = fft.ifft2(fft.ifftshift(spectrum * (1 - mask))).real
    return low, high


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, _ = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, init_values: float | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        if init_values is not None:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x):
        if self.gamma_1 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """The fine-tuning ViT with ``use_mean_pooling``, intermediate layers, return_features
    (and the parts it never uses at inference, as the released weights hold them)."""

    def __init__(self, dim, depth, heads, patch, size, layers, init_values=None) -> None:
        super().__init__()
        tokens = (size // patch) ** 2 + 1
        self.intermediate_layers = layers
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, init_values) for _ in range(depth)])
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.cls_pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.actual_cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_blocks = nn.ModuleList([Block(dim, heads, init_values)])
        self.intermediate_fc_norm = nn.ModuleList([nn.LayerNorm(dim) for _ in layers])
        self.head = nn.Linear(dim * len(layers), 2)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.size(0), -1, -1), x), dim=1) + self.pos_embed
        kept = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.intermediate_layers:
                kept.append(x[:, 1:])
        return torch.stack(kept, dim=1)


class Projector(nn.Module):
    def __init__(self, input_dim, proj_dim, last=nn.GELU, input_norm=True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(input_dim) if input_norm else nn.Identity()
        layers: list[nn.Module] = [nn.Dropout(0.5)]
        for i in range(2):
            layers += [
                nn.Linear(input_dim if i == 0 else proj_dim, proj_dim),
                nn.GELU() if i < 1 else last(),
                nn.Dropout(0.5),
            ]
        self.projector = nn.Sequential(*layers)
        self.norm2 = nn.LayerNorm(proj_dim)

    def forward(self, x):
        return self.norm2(self.projector(self.norm1(x)))


class FeatureSpecificProjector(nn.Module):
    def __init__(self, n, input_dim, proj_dim) -> None:
        super().__init__()
        self.projectors = nn.ModuleList(
            [Projector(input_dim, proj_dim, last=nn.Identity) for _ in range(n)]
        )

    def forward(self, x):
        return torch.stack([p(x[:, i, :, :]) for i, p in enumerate(self.projectors)], dim=1)


class FeatureImportanceProjector(nn.Module):
    def __init__(self, n, proj_dim) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.randn([1, n, proj_dim]))
        self.proj1 = Projector(2 * proj_dim, proj_dim, input_norm=False)
        self.proj2 = Projector(proj_dim, proj_dim, input_norm=False)

    def forward(self, x):
        x = torch.cat([x.mean(dim=2), x.std(dim=2)], dim=-1)
        x = self.proj1(x)
        return self.proj2(torch.sum(torch.softmax(self.alpha, dim=1) * x, dim=1))


class FrequencyRestorationEstimator(nn.Module):
    def __init__(self, n, input_dim, proj_dim) -> None:
        super().__init__()
        self.patch_projector = FeatureSpecificProjector(n, input_dim, proj_dim)
        self.original_features_processor = FeatureImportanceProjector(n, proj_dim)

    def forward(self, x, low_freq, hi_freq):
        orig = self.patch_projector(x)
        low_freq = self.patch_projector(low_freq)
        hi_freq = self.patch_projector(hi_freq)
        sims = [
            F.cosine_similarity(orig, low_freq, dim=-1),
            F.cosine_similarity(orig, hi_freq, dim=-1),
            F.cosine_similarity(low_freq, hi_freq, dim=-1),
        ]
        pooled = [t for s in sims for t in (s.mean(dim=-1), s.std(dim=-1))]
        return torch.cat([torch.cat(pooled, dim=1), self.original_features_processor(orig)], 1)


class MFViT(nn.Module):
    def __init__(self, vit, processor, radius, size) -> None:
        super().__init__()
        self.vit, self.features_processor = vit, processor
        self.frequencies_mask = nn.Parameter(circular_mask(size, radius), requires_grad=False)

    def forward(self, x):
        low, high = filter_frequencies(x.float(), self.frequencies_mask)
        low, high = torch.clamp(low, 0.0, 1.0), torch.clamp(high, 0.0, 1.0)
        views = [(v - IMAGENET_MEAN) / IMAGENET_STD for v in (x, low, high)]
        return self.features_processor(*(self.vit(v) for v in views))


class ClassificationHead(nn.Module):
    def __init__(self, dim, mlp_ratio) -> None:
        super().__init__()
        width = dim * mlp_ratio
        self.head = nn.Sequential(
            nn.Linear(dim, width),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(width, 1),
        )

    def forward(self, x):
        return self.head(x)


class OfficialSpai(nn.Module):
    """``PatchBasedMFViT`` in inference (``forward`` on a list of images)."""

    def __init__(
        self,
        dim: int = 128,
        depth: int = 3,
        proj_dim: int = 48,
        attn_dim: int = 64,
        attn_heads: int = 4,
        size: int = 224,
        minimum_patches: int = 4,
        init_values: float | None = None,
    ) -> None:
        super().__init__()
        layers = tuple(range(depth))
        vit = VisionTransformer(dim, depth, dim // 64, 16, size, layers, init_values)
        fre = FrequencyRestorationEstimator(depth, dim, proj_dim)
        self.mfvit = MFViT(vit, fre, radius=16, size=size)
        self.size, self.minimum_patches = size, minimum_patches
        cls_dim = 6 * depth + proj_dim
        self.heads, self.scale = attn_heads, (attn_dim // attn_heads) ** -0.5
        self.to_kv = nn.Linear(cls_dim, attn_dim * 2, bias=False)
        self.patch_aggregator = nn.Parameter(torch.zeros(attn_heads, 1, attn_dim // attn_heads))
        self.to_out = nn.Sequential(nn.Linear(attn_dim, cls_dim, bias=False), nn.Dropout(0.5))
        self.norm = nn.LayerNorm(cls_dim)
        self.cls_head = ClassificationHead(cls_dim, mlp_ratio=3)

    def patchify(self, img):
        """``utils.patchify_image`` with stride = size."""
        k = self.size
        img = img.unfold(2, k, k).unfold(3, k, k).permute(0, 2, 3, 1, 4, 5).contiguous()
        return img.view(img.size(0), -1, img.size(3), k, k)

    def patches_attention(self, x):
        b, n, _ = x.shape
        aggregator = self.patch_aggregator.expand(b, -1, -1, -1)
        k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_kv(x).chunk(2, -1))
        attn = torch.softmax(torch.matmul(aggregator, k.transpose(-1, -2)) * self.scale, dim=-1)
        x = torch.matmul(attn, v).transpose(1, 2).reshape(b, 1, -1)
        return self.to_out(x).squeeze(dim=1)

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``forward_arbitrary_resolution_batch``: 1 x 3 x H x W tensors in [0, 1] -> B x 1."""
        patched = []
        for img in images:
            tiles = self.patchify(img)
            if tiles.size(1) < self.minimum_patches:
                tiles = torch.stack(five_crop(img, [self.size, self.size]), dim=1)
            patched.append(tiles)
        counts = [t.size(1) for t in patched]
        features = self.mfvit(torch.cat(patched, dim=1).squeeze(dim=0))
        attended, start = [], 0
        for n in counts:
            attended.append(self.patches_attention(features[start : start + n].unsqueeze(0)))
            start += n
        return self.cls_head(self.norm(torch.cat(attended, dim=0)))


def spai_transform(path: Path, size: int = 224) -> torch.Tensor:
    """The test transform: RGB, ``PadIfNeeded(size, size)`` (reflect-101, centred),
    ``Normalize(mean=0, std=1)``, ``ToTensorV2``: 1 x 3 x H x W."""
    with Image.open(path) as image:
        pixels = np.array(image.convert("RGB"))
    rows, cols = pixels.shape[:2]
    top = int((size - rows) / 2.0) if rows < size else 0
    left = int((size - cols) / 2.0) if cols < size else 0
    bottom = size - rows - top if rows < size else 0
    right = size - cols - left if cols < size else 0
    if top or bottom or left or right:
        pixels = cv2.copyMakeBorder(pixels, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    scaled = pixels.astype(np.float32) / 255.0
    return torch.from_numpy(scaled.transpose(2, 0, 1).copy())[None]


def spai_logit(model: OfficialSpai, path: Path) -> float:
    """The official pipeline's logit for one image file."""
    with torch.no_grad():
        return float(model([spai_transform(path)]).reshape(-1)[0])
