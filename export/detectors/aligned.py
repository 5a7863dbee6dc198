"""``aligned``: AlignedForensics (Rajan et al., ICLR 2025; its test code is Apache-2.0).

Official semantics (``test_code/main.py``, ``networks/resnet_mod.py``,
``weights/ours-sync/config.yaml`` there): ``res50nodown``, a ResNet-50 whose stem
does not downsample (the 7x7 convolution and the max-pool at stride 1), dropout
before a ``ChannelLinear(2048, 1)`` after global average pooling; ``patch_size:
null``: the **whole image** at its own resolution, ``ToTensor`` and ImageNet's
mean and std (``norm_type: resnet``), one logit. ``load_weights`` reads four
layouts: ``{'model': ...}`` (keys maybe ``module.``-prefixed), ``{'state_dict':
...}``, ``{'net': ...}``, or the bare state dict.

The export is one graph with dynamic height and width (``whole`` mode); its
activations grow with the pixels (~1 GiB at 1 MP in fp32), so images over
``--max-input-pixels`` are centre-cropped to that many pixels (aspect kept, never
resized: resizing would erase the traces the detector reads) and their record
says so. The architecture is read from the weights (stem width, stage widths,
blocks per stage).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ufd.export.detectors.base import (
    BuiltDetector,
    Detector,
    DetectorOption,
    DetectorRequest,
    load_exactly,
    read_state_dict,
    require_keys,
)
from ufd.export.detectors.registry import register
from ufd.export.heads import HeadInfo
from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import ModelInfo, PreprocessConfig
from ufd.runtime.errors import ModelLoadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROBE_SIZE = 256
INT8_FP32_MODULES = ("conv1", "layer1")
"""The stem and the first stage, at the input's full resolution, stay fp32 in int8
graphs: on 13 photos (random He-initialised res50nodown, batch norms calibrated on a
photo) the static int8 graph's max |Δlogit| fell from 0.43 (stem only) to 0.08, and
it ran 2.5x faster than fp32 instead of 3.5x (512x512, 2 threads, AMD EPYC with
AVX-512 VNNI)."""
"""The side of the square crops devices measure parity on (the graph takes any size)."""
DEFAULT_MAX_INPUT_PIXELS = 2 * 1024 * 1024


def checkpoint_state(raw: dict, path: Path) -> dict[str, torch.Tensor]:
    """The model's tensors, in the four layouts of the official ``load_weights``.

    Raises:
        ModelLoadError: none of them.
    """
    if isinstance(raw.get("model"), dict):
        state = raw["model"]
        if "module.fc.weight" in state:
            state = {k.removeprefix("module."): v for k, v in state.items()}
    elif isinstance(raw.get("state_dict"), dict):
        state = raw["state_dict"]
    elif isinstance(raw.get("net"), dict):
        state = raw["net"]
    elif "conv1.weight" in raw:
        state = raw
    else:
        raise ModelLoadError(
            f"{path.name} is not in a layout AlignedForensics' load_weights reads "
            "('model', 'state_dict', 'net' or a bare ResNet state dict)"
        )
    return {k: v.float() for k, v in state.items() if not k.endswith("num_batches_tracked")}


class Bottleneck(nn.Module):
    """ResNet's bottleneck block, the stride on its 3x3 convolution (``resnet_mod``)."""

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
            if downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class NoDownResNet(nn.Module):
    """``res50nodown`` up to its pooled features: (N, 3, H, W) -> (N, 4 x last width)."""

    def __init__(self, stem: int, widths: list[int], blocks: list[int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=1, padding=1)
        inplanes = stem
        for stage, (planes, count) in enumerate(zip(widths, blocks, strict=True)):
            layers = []
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(Bottleneck(inplanes, planes, stride, i == 0))
                inplanes = planes * 4
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.num_features = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The globally pooled features of the last stage."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return torch.flatten(self.avgpool(x), 1)


def build_resnet(state: dict[str, torch.Tensor]) -> NoDownResNet:
    """The no-downsampling ResNet the weights describe."""
    widths = [state[f"layer{s}.0.conv1.weight"].shape[0] for s in range(1, 5)]
    blocks = [
        len({k.split(".")[1] for k in state if k.startswith(f"layer{s}.")}) for s in range(1, 5)
    ]
    return NoDownResNet(state["conv1.weight"].shape[0], widths, blocks).eval()


@register
class AlignedForensics(Detector):
    """A ResNet-50 without stem downsampling, on the whole image at full resolution."""

    name = "aligned"
    summary = "AlignedForensics (ICLR 2025): ResNet-50 without stem downsampling, whole image"
    backbone = "ResNet-50, stem at stride 1 (res50nodown), tuned end to end"
    input_size = "the whole image at its resolution (centre-cropped to --max-input-pixels)"
    weights = (
        "--pretrained weights.pth of AnirudhSundara/AlignedForensics (ours, ours-sync, and "
        "the shaders variants): any layout its load_weights reads"
    )
    licence = "test code Apache-2.0 (AlignedForensics); weights as published by the authors"
    options = (
        DetectorOption(
            "max_input_pixels",
            "Largest image the encoder sees, in pixels; larger ones are centre-cropped to it "
            "(aspect kept, never resized) and their record says so. Memory grows with it: "
            "about 1 GiB per megapixel in fp32.",
            kind=int,
            default=DEFAULT_MAX_INPUT_PIXELS,
        ),
    )

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The ResNet (dynamic size) and its one-logit head."""
        if not request.pretrained or request.pretrained.lower() in ("none", "random"):
            raise ModelLoadError(
                "aligned needs its weights: --pretrained weights.pth (AlignedForensics' "
                "released ResNet-50, e.g. ours-sync)"
            )
        path = Path(request.pretrained).expanduser()
        state = checkpoint_state(read_state_dict(path, "AlignedForensics weights"), path)
        require_keys(state, ["conv1.weight", "fc.weight", "fc.bias"], "AlignedForensics", path)
        resnet = build_resnet(state)
        load_exactly(
            resnet,
            {k: v for k, v in state.items() if not k.startswith("fc.")},
            "AlignedForensics weights",
            path,
        )
        head = nn.Linear(resnet.num_features, 1)
        fc = {"weight": state["fc.weight"].reshape(1, -1), "bias": state["fc.bias"].reshape(1)}
        load_exactly(head, fc, "AlignedForensics head", path)
        cap = int(request.setting("max_input_pixels"))
        if cap < PROBE_SIZE * PROBE_SIZE:
            raise ModelLoadError(f"--max-input-pixels {cap} is below {PROBE_SIZE}x{PROBE_SIZE}")
        info = ModelInfo(
            name="res50nodown",
            pretrained=path.name,
            feature_dim=resnet.num_features,
            image_size=PROBE_SIZE,
            quick_gelu=False,
            checkpoint_sha256=sha256_file(path),
            detector=self.name,
        )
        preprocess = PreprocessConfig(
            mode="whole",
            crop_size=PROBE_SIZE,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            max_input_pixels=cap,
        )
        return BuiltDetector(
            encoder=resnet,
            head=head.eval(),
            info=info,
            preprocess=preprocess,
            head_info=HeadInfo(kind="aligned", source=path.name, sha256=info.checkpoint_sha256),
            notes=[f"AlignedForensics: whole images up to {cap:,} pixels (centre-cropped beyond)"],
            static_int8_ops=("Conv", "MatMul"),  # dynamic ConvInteger is slower than fp32
            int8_fp32_modules=INT8_FP32_MODULES,
        )
