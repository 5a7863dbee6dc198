"""An independent reference of AlignedForensics' official test pipeline (random weights).

Follows ``test_code/networks/resnet_mod.py`` (``ResNet(Bottleneck, [3, 4, 6, 3],
stride0=1, dropout=0.5)``: the stem convolution and max-pool at stride 1,
``ChannelLinear`` after global average pooling) and ``test_code/main.py``
(``patch_size: null``: the whole image, ``ToTensor`` + ImageNet normalisation).
The widths are parameters so that a tiny model keeps the tests fast.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import transforms

ALIGNED_TRANSFORM = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
)


class ChannelLinear(nn.Linear):
    def forward(self, x):
        axis_ref = len(x.shape) - 1
        x = torch.transpose(x, 1, axis_ref)
        out_shape = list(x.shape)
        out_shape[-1] = self.out_features
        x = x.reshape(-1, x.shape[-1]).matmul(self.weight.t()) + self.bias[None, :]
        return torch.transpose(x.view(out_shape), axis_ref, 1)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(identity)
        return self.relu(out + identity)


class OfficialNoDownResNet(nn.Module):
    """``resnet50(num_classes=1, stride0=1, dropout=0.5)`` with scalable widths."""

    def __init__(self, widths=(64, 128, 256, 512), layers=(3, 4, 6, 3), stem=64) -> None:
        super().__init__()
        self.inplanes = stem
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.dropout = nn.Dropout(0.5)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        for i, (planes, count) in enumerate(zip(widths, layers, strict=True)):
            setattr(self, f"layer{i + 1}", self._make_layer(planes, count, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = ChannelLinear(widths[-1] * 4, 1)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        y = self.fc(self.dropout(self.avgpool(x)))
        return torch.squeeze(torch.squeeze(y, -1), -1)
