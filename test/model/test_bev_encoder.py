"""BEV encoder: checkpoint names, bare-conv shortcut, stage sizes at the 100x100 BEV grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gsdocc_ros.model.bev_encoder import BEVResNet, FPNLSS


def test_bev_resnet_keys_and_shapes_match_reference(reference_under, state_shapes) -> None:
    assert state_shapes(BEVResNet()) == reference_under("img_bev_encoder_backbone")


def test_fpn_lss_keys_and_shapes_match_reference(reference_under, state_shapes) -> None:
    assert state_shapes(FPNLSS()) == reference_under("img_bev_encoder_neck")


def test_bev_resnet_first_block_strides_with_a_bare_biased_conv() -> None:
    first = BEVResNet().layers[0][0]
    assert isinstance(first.downsample, nn.Conv2d) and first.downsample.bias is not None
    assert first.downsample.stride == (2, 2) and first.conv1.stride == (2, 2)


def test_bev_encoder_sizes_on_the_100x100_grid() -> None:
    torch.manual_seed(0)
    backbone, neck = BEVResNet().eval(), FPNLSS().eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 256, 100, 100))
        out = neck(feats)
    assert [tuple(f.shape) for f in feats] == [(1, 512, 50, 50), (1, 1024, 25, 25)]
    assert out.shape == (1, 256, 100, 100)


def test_fpn_lss_upsamples_bilinear_align_corners() -> None:
    torch.manual_seed(0)
    neck = FPNLSS(in_channels=6, out_channels=2).eval()
    fine, coarse = torch.randn(1, 2, 8, 8), torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=True)
        x = neck.conv(torch.cat([fine, up], dim=1))
        up2 = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        expected = neck.up2[1:](up2)
        assert torch.allclose(neck([fine, coarse]), expected, atol=1e-6)
