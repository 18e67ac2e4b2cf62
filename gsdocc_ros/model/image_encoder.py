"""Image encoder: ResNet-50 (``img_backbone``) and the one-level CustomFPN (``img_neck``).

Attribute names are torchvision's / mmcv's, because they are the keys of the official checkpoint.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Bottleneck(nn.Module):
    """ResNet bottleneck, 'pytorch' style: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """x [B,Cin,H,W] -> [B,4*width,H/stride,W/stride]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))  # [B,width,H/stride,W/stride]
        out = self.bn3(self.conv3(out))  # [B,4*width,H/stride,W/stride]
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 without the classifier; returns C4 (stride 16) and C5 (stride 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._in_channels = 64
        self.layer1 = self._make_layer(64, 3, stride=1)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)

    def _make_layer(self, width: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage; its first block changes width/stride through a 1x1 conv-BN shortcut."""
        out_channels = width * Bottleneck.expansion
        downsample = nn.Sequential(
            nn.Conv2d(self._in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        layers = [Bottleneck(self._in_channels, width, stride, downsample)]
        layers += [Bottleneck(out_channels, width) for _ in range(blocks - 1)]
        self._in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B,3,H,W] -> (C4 [B,1024,H/16,W/16], C5 [B,2048,H/32,W/32])."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B,64,H/4,W/4]
        x = self.layer2(self.layer1(x))  # [B,512,H/8,W/8]
        c4 = self.layer3(x)  # [B,1024,H/16,W/16]
        c5 = self.layer4(c4)  # [B,2048,H/32,W/32]
        return c4, c5


class ConvModule(nn.Module):
    """A bare conv with bias kept under ``.conv``, as mmcv's ConvModule without norm/activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        """x [B,Cin,H,W] -> [B,Cout,H,W]."""
        return self.conv(x)


class CustomFPN(nn.Module):
    """Two-level FPN with a single output at the finer level (C4 resolution)."""

    def __init__(self, in_channels: tuple[int, int] = (1024, 2048), out_channels: int = 512) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList([ConvModule(out_channels, out_channels, 3)])

    def forward(self, c4: Tensor, c5: Tensor) -> Tensor:
        """C4 [B,1024,h,w] and C5 [B,2048,h/2,w/2] -> [B,512,h,w]."""
        coarse = self.lateral_convs[1](c5)  # [B,512,h/2,w/2]
        fine = self.lateral_convs[0](c4)  # [B,512,h,w]
        fine = fine + F.interpolate(coarse, size=fine.shape[2:], mode="nearest")  # [B,512,h,w]
        return self.fpn_convs[0](fine)
