"""Small building blocks shared by the image encoder, depth net, view transform, BEV encoder, fusion and head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

_BATCH_NORMS: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def inverse(matrices: Tensor) -> Tensor:
    """torch.inverse without its singularity check, which reads a flag back from the device (a sync on CUDA)."""
    return torch.linalg.inv_ex(matrices).inverse


def conv_bn_relu(conv: nn.Module) -> nn.Sequential:
    """[conv, BN, ReLU] with the BN (eps 1e-5) matching the conv's dimensionality and output width.

    The Sequential indices 0/1/2 are the official checkpoint names (e.g. ``reduce_conv.{0,1}``).
    """
    dims = len(conv.kernel_size)  # type: ignore[arg-type]
    return nn.Sequential(conv, _BATCH_NORMS[dims](conv.out_channels), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """mmdet/torchvision ResNet basic block: two 3x3 conv-BN with a residual and a final ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """x [B,Cin,H,W] -> [B,Cout,H/stride,W/stride]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)
