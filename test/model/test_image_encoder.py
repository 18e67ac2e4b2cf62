"""ResNet-50 and CustomFPN: checkpoint names, 'pytorch' stride placement and 256x704 feature sizes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gsdocc_ros.model.image_encoder import CustomFPN, ResNet50


def test_resnet50_keys_and_shapes_match_reference(reference_under, state_shapes) -> None:
    assert state_shapes(ResNet50()) == reference_under("img_backbone")


def test_custom_fpn_keys_and_shapes_match_reference(reference_under, state_shapes) -> None:
    assert state_shapes(CustomFPN()) == reference_under("img_neck")


def test_resnet50_stride_sits_on_the_3x3_conv() -> None:
    first = ResNet50().layer2[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    assert first.downsample[0].stride == (2, 2)


def test_image_encoder_feature_sizes_at_256x704() -> None:
    torch.manual_seed(0)
    backbone, neck = ResNet50().eval(), CustomFPN().eval()
    with torch.no_grad():
        c4, c5 = backbone(torch.randn(1, 3, 256, 704))
        out = neck(c4, c5)
    assert c4.shape == (1, 1024, 16, 44) and c5.shape == (1, 2048, 8, 22)
    assert out.shape == (1, 512, 16, 44)


def test_fpn_adds_nearest_upsampled_coarse_level() -> None:
    torch.manual_seed(0)
    neck = CustomFPN(in_channels=(4, 6), out_channels=5).eval()
    c4, c5 = torch.randn(1, 4, 6, 10), torch.randn(1, 6, 3, 5)
    with torch.no_grad():
        coarse = neck.lateral_convs[1].conv(c5).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        expected = F.conv2d(neck.lateral_convs[0].conv(c4) + coarse, neck.fpn_convs[0].conv.weight,
                            neck.fpn_convs[0].conv.bias, padding=1)
        assert torch.allclose(neck(c4, c5), expected, atol=1e-6)
