"""Shared blocks: BasicBlock residual wiring and conv_bn_relu's BN choice."""

from __future__ import annotations

import torch
from torch import nn

from gsdocc_ros.model.layers import BasicBlock, conv_bn_relu


def test_conv_bn_relu_matches_conv_dimensionality_and_width() -> None:
    block3d = conv_bn_relu(nn.Conv3d(4, 6, 3, padding=1))
    assert isinstance(block3d[1], nn.BatchNorm3d) and block3d[1].num_features == 6
    block2d = conv_bn_relu(nn.ConvTranspose2d(4, 5, 3))
    assert isinstance(block2d[1], nn.BatchNorm2d) and block2d[1].num_features == 5
    assert block2d[1].eps == 1e-5
    assert list(block2d.state_dict())[:2] == ["0.weight", "0.bias"]


def test_basic_block_is_relu_of_residual_sum() -> None:
    torch.manual_seed(0)
    block = BasicBlock(8, 8).eval()
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        assert torch.allclose(block(x), torch.relu(branch + x))


def test_basic_block_stride_uses_downsample_on_shortcut() -> None:
    shortcut = nn.Conv2d(4, 8, 3, stride=2, padding=1)
    block = BasicBlock(4, 8, stride=2, downsample=shortcut).eval()
    assert block(torch.randn(1, 4, 10, 12)).shape == (1, 8, 5, 6)
    assert "downsample.bias" in block.state_dict()
