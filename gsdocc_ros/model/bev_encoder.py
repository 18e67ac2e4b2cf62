"""BEV encoder: a two-stage ResNet (``img_bev_encoder_backbone``) and the FPN_LSS neck (``img_bev_encoder_neck``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsdocc_ros.model.layers import BasicBlock, conv_bn_relu


class BEVResNet(nn.Module):
    """CustomResNet: stages of BasicBlocks; each stage's first block strides by 2 with a bare 3x3 conv shortcut."""

    def __init__(self, in_channels: int = 256, channels: tuple[int, ...] = (512, 1024),
                 blocks_per_stage: int = 2) -> None:
        super().__init__()
        stages = []
        for out_channels in channels:
            shortcut = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
            blocks = [BasicBlock(in_channels, out_channels, stride=2, downsample=shortcut)]
            blocks += [BasicBlock(out_channels, out_channels) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
        self.layers = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        """x [B,Cin,Y,X] -> one map per stage: [B,512,Y/2,X/2], [B,1024,Y/4,X/4]."""
        feats = []
        for stage in self.layers:
            x = stage(x)  # [B,Cstage,Y/2^k,X/2^k]
            feats.append(x)
        return feats


class FPNLSS(nn.Module):
    """FPN_LSS: upsample the coarse map, concatenate with the fine one, convolve, upsample x2 again."""

    def __init__(self, in_channels: int = 1536, out_channels: int = 256) -> None:
        super().__init__()
        mid_channels = 2 * out_channels  # the official channels_factor of 2
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = nn.Sequential(
            *conv_bn_relu(nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False)),
            *conv_bn_relu(nn.Conv2d(mid_channels, mid_channels, 3, padding=1, bias=False)),
        )
        self.up2 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            *conv_bn_relu(nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False)),
            nn.Conv2d(out_channels, out_channels, 1),
        )

    def forward(self, feats: list[Tensor]) -> Tensor:
        """[fine [B,512,Y/2,X/2], coarse [B,1024,Y/4,X/4]] -> [B,256,Y,X]."""
        fine, coarse = feats
        x = torch.cat([fine, self.up(coarse)], dim=1)  # [B,1536,Y/2,X/2]
        x = self.conv(x)  # [B,512,Y/2,X/2]
        return self.up2(x)  # [B,256,Y,X]
