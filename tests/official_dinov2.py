"""Independent references of the DINOv2-based detectors' official pipelines (random weights).

``OfficialDINOv2`` follows facebookresearch/dinov2 (``dinov2/models/vision_transformer.py``
and ``dinov2/layers``) as torch.hub builds it: patch embedding, class token,
position embedding resampled at run time by ``interpolate_pos_encoding`` (bicubic,
``interpolate_offset`` 0.1, no antialias), pre-norm blocks with LayerScale, the
final norm; ``forward_features`` returns ``x_norm_clstoken``. ``OfficialDDA``
follows roy-ch/Dual-Data-Alignment (``Inference/models``): ``LoRALinear`` around
every qkv/proj/fc1/fc2 (``W x + b + (alpha / r) B A x``, by einsum as there), and
``fc`` on the class token. Nothing here comes from timm or from ufd's export.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision import transforms

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DDA_TRANSFORM = transforms.Compose(
    [transforms.CenterCrop(336), transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)]
)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1 = (
            nn.LayerNorm(dim, eps=1e-6),
            Attention(dim, heads),
            LayerScale(dim),
        )
        self.norm2, self.mlp, self.ls2 = (
            nn.LayerNorm(dim, eps=1e-6),
            Mlp(dim, 4 * dim),
            LayerScale(dim),
        )

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class OfficialDINOv2(nn.Module):
    """torch.hub's ``dinov2_vit*14`` (no registers), at its 518 training size."""

    def __init__(self, dim: int = 128, depth: int = 2, heads: int = 2, patch: int = 14) -> None:
        super().__init__()
        self.patch_size, self.interpolate_offset = patch, 0.1
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (518 // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))

    def interpolate_pos_encoding(self, x, w, h):
        npatch, n = x.shape[1] - 1, self.pos_embed.shape[1] - 1
        if npatch == n and w == h:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:]
        dim = x.shape[-1]
        w0, h0 = w // self.patch_size, h // self.patch_size
        m = int(math.sqrt(n))
        sx, sy = float(w0 + self.interpolate_offset) / m, float(h0 + self.interpolate_offset) / m
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed.reshape(1, m, m, dim).permute(0, 3, 1, 2),
            scale_factor=(sx, sy),
            mode="bicubic",
            antialias=False,
        )
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def forward_features(self, x):
        _, _, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        for block in self.blocks:
            x = block(x)
        return {"x_norm_clstoken": self.norm(x)[:, 0]}


class LoRALayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.alpha, self.rank = alpha, rank
        self.lora_A = nn.Parameter(torch.zeros((rank, in_dim)))
        self.lora_B = nn.Parameter(torch.zeros((out_dim, rank)))

    def forward(self, x):
        out = torch.einsum("...d, rd -> ...r", x, self.lora_A)
        out = torch.einsum("...r, or -> ...o", out, self.lora_B)
        return out * (self.alpha / self.rank)


class LoRALinear(nn.Module):
    def __init__(self, original: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.original_layer = original
        self.lora = LoRALayer(original.in_features, original.out_features, rank, alpha)

    def forward(self, x):
        return self.original_layer(x) + self.lora(x)


class DINOv2Model(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.model = backbone
        self.fc = nn.Linear(backbone.norm.normalized_shape[0], 1)

    def forward(self, x):
        return self.fc(self.model.forward_features(x)["x_norm_clstoken"])


class OfficialDDA(nn.Module):
    """``DINOv2ModelWithLoRA(name, lora_rank=8, lora_alpha=1)`` on a tiny DINOv2."""

    def __init__(self, rank: int = 8, alpha: float = 1.0, **dinov2) -> None:
        super().__init__()
        self.base_model = DINOv2Model(OfficialDINOv2(**dinov2))
        targets = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
        for name, module in list(self.base_model.model.named_modules()):
            if isinstance(module, nn.Linear) and any(t in name for t in targets):
                parent, _, child = name.rpartition(".")
                setattr(
                    self.base_model.model.get_submodule(parent),
                    child,
                    LoRALinear(module, rank, alpha),
                )

    def forward(self, x):
        return self.base_model(x)


def replicate_wrap(x, new_shape):
    """grip-unina/B-Free ``code/networks/wrapper5crops.py``."""
    rep_height = max(math.ceil(new_shape[-2] / x.shape[-2]), 1)
    rep_width = max(math.ceil(new_shape[-1] / x.shape[-1]), 1)
    x = x.repeat(1, 1, rep_height, rep_width)
    return x[..., : new_shape[-2], : new_shape[-1]]


class OfficialBFree(nn.Module):
    """B-Free's ``Wrapper5crops`` around a (tiny) timm DINOv2-with-registers ViT, at 504."""

    def __init__(self, width: int = 64, depth: int = 2, patch_size: int = 504) -> None:
        super().__init__()
        import timm

        self.model = timm.models.vision_transformer.VisionTransformer(
            img_size=518,
            patch_size=14,
            embed_dim=width,
            depth=depth,
            num_heads=max(1, width // 64),
            init_values=1e-5,
            reg_tokens=4,
            no_embed_class=True,
            num_classes=1,
        )
        self.model.set_input_size(img_size=patch_size)
        self.patch_embed = self.model.patch_embed
        self.model.patch_embed = nn.Identity()

    def timm_state(self) -> dict:
        """The checkpoint's ``'model'``: timm's own keys (what ``load_state_dict`` splits)."""
        state = {k: v for k, v in self.model.state_dict().items()}
        state.update({f"patch_embed.{k}": v for k, v in self.patch_embed.state_dict().items()})
        return state

    def forward(self, x):
        patch_size = self.patch_embed.grid_size
        embeddings = self.patch_embed.proj(x)
        ph = max(patch_size[0] - embeddings.shape[-2], 0)
        pw = max(patch_size[1] - embeddings.shape[-1], 0)
        if (ph > 0) or (pw > 0):
            embeddings = replicate_wrap(embeddings, patch_size)
        hs = max((embeddings.shape[-2] - patch_size[0]) // 2, 0)
        ws = max((embeddings.shape[-1] - patch_size[1]) // 2, 0)
        embeddings = torch.cat(
            (
                embeddings[:, :, hs : patch_size[0] + hs, ws : patch_size[1] + ws],
                embeddings[:, :, : patch_size[0], : patch_size[1]],
                embeddings[:, :, -patch_size[0] :, : patch_size[1]],
                embeddings[:, :, -patch_size[0] :, -patch_size[1] :],
                embeddings[:, :, : patch_size[0], -patch_size[1] :],
            ),
            0,
        )
        if self.patch_embed.flatten:
            embeddings = embeddings.flatten(2).transpose(1, 2)
        embeddings = self.patch_embed.norm(embeddings)
        y = self.model(embeddings)
        return torch.mean(torch.stack(torch.split(y, y.shape[0] // 5, 0), 0), 0)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BFREE_TRANSFORM = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)]
)
