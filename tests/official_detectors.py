"""Independent references of each detector's official pipeline, with random weights.

Each class follows its authors' code (module layout, forward pass, the way it
loads weights and the test transform), built from their libraries (open_clip
for OpenAI CLIP, transformers' ``CLIPModel``, timm), never from ufd's export
code. Each writes its weights in the official file format, which ufd then
exports.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision import transforms

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Hook:
    """mever-team/rine ``src/models.py``'s forward hook."""

    def __init__(self, name, module):
        self.name = name
        self.hook = module.register_forward_hook(self.hook_fn)

    def hook_fn(self, module, input, output):
        self.input = input
        self.output = output


class OfficialRine(nn.Module):
    """RINE's ``Model`` (mever-team/rine ``src/models.py``) around an open_clip tower.

    The official CLIP (OpenAI's ``clip`` package) runs sequence-first, (L, N, D),
    so ``stack(dim=2)[0]`` takes token 0; open_clip runs batch-first, so each
    hook output is transposed to the official layout first.
    """

    def __init__(self, visual: nn.Module, nproj: int, proj_dim: int) -> None:
        super().__init__()
        self.visual = visual
        self.hooks = [
            Hook(name, module) for name, module in visual.named_modules() if "ln_2" in name
        ]
        self.alpha = nn.Parameter(torch.randn([1, len(self.hooks), proj_dim]))
        width = visual.conv1.out_channels
        proj1_layers = [nn.Dropout()]
        for i in range(nproj):
            proj1_layers.extend(
                [nn.Linear(width if i == 0 else proj_dim, proj_dim), nn.ReLU(), nn.Dropout()]
            )
        self.proj1 = nn.Sequential(*proj1_layers)
        proj2_layers = [nn.Dropout()]
        for _ in range(nproj):
            proj2_layers.extend([nn.Linear(proj_dim, proj_dim), nn.ReLU(), nn.Dropout()])
        self.proj2 = nn.Sequential(*proj2_layers)
        self.head = nn.Sequential(
            nn.Linear(proj_dim, proj_dim),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(proj_dim, proj_dim),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(proj_dim, 1),
        )

    def forward(self, x):
        with torch.no_grad():
            self.visual(x)
            g = torch.stack([h.output.transpose(0, 1) for h in self.hooks], dim=2)[0, :, :, :]
        g = self.proj1(g.float())
        z = torch.softmax(self.alpha, dim=1) * g
        z = torch.sum(z, dim=1)
        z = self.proj2(z)
        return self.head(z), z

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What ``scripts/best.py`` saves: the parameters outside CLIP."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("visual.")}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """``get_our_trained_model``'s loop: each tensor set as a Parameter by its dotted name."""
        for name, tensor in state.items():
            target = self
            parts = name.split(".")
            for part in parts[:-1]:
                target = target[int(part)] if part.isdigit() else getattr(target, part)
            setattr(target, parts[-1], nn.Parameter(tensor))


RINE_TRANSFORM = transforms.Compose(
    [transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)]
)


class OfficialC2PClip(nn.Module):
    """C2P-CLIP's ``C2P_CLIP`` (``inference.py``), from a ``CLIPConfig`` instead of a download."""

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import CLIPModel

        self.model = CLIPModel(config)
        del self.model.text_model
        del self.model.text_projection
        del self.model.logit_scale
        self.model.fc = nn.Linear(768, 1)
        torch.nn.init.normal_(self.model.fc.weight.data, 0.0, 0.02)

    def encode_image(self, img):
        vision_outputs = self.model.vision_model(pixel_values=img, return_dict=False)
        pooled_output = vision_outputs[1]
        return self.model.visual_projection(pooled_output)

    def forward(self, img):
        image_embeds = self.encode_image(img)
        image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
        return self.model.fc(image_embeds)


def clip_config(width: int = 128, layers: int = 2, heads: int = 2, patch: int = 32):
    """A CLIP vision tower (QuickGELU, 4x MLP, 768-d projection, as C2P-CLIP's ``fc`` needs).

    The defaults make a tiny one for tests; ViT-L/14 is ``clip_config(1024, 24, 16, 14)``.
    """
    from transformers import CLIPConfig

    return CLIPConfig(
        vision_config={
            "hidden_size": width,
            "intermediate_size": 4 * width,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "image_size": 224,
            "patch_size": patch,
            "hidden_act": "quick_gelu",
        },
        text_config={"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=768,
    )


C2P_TRANSFORM = transforms.Compose(
    [
        transforms.Resize(224),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=list(CLIP_MEAN), std=list(CLIP_STD)),
    ]
)


class OfficialViTClassifier(nn.Module):
    """Community Forensics' ``ViTClassifier`` (``models.py``), random-init timm weights."""

    def __init__(self, timm_name: str, width: int) -> None:
        super().__init__()
        import timm

        self.vit = timm.create_model(timm_name, pretrained=False)
        self.vit.head = nn.Linear(in_features=width, out_features=1, bias=True)

    def forward(self, x):
        return self.vit(x)


def commfor_transform(input_size: int) -> transforms.Compose:
    """``get_transform(mode='test')``: Resize, CenterCrop, ToTensor_range(0, 1), ImageNet norm."""
    resize = {224: 256, 384: 440}[input_size]
    return transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(input_size),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )


def logits(model: nn.Module, transform, paths: list[Path]) -> list[float]:
    """The official model's logit for each image (PIL ``open().convert('RGB')``)."""
    out = []
    with torch.no_grad():
        for path in paths:
            with Image.open(path) as image:
                x = transform(image.convert("RGB")).unsqueeze(0)
            result = model(x)
            result = result[0] if isinstance(result, tuple) else result
            out.append(float(result.reshape(-1)[0]))
    return out
