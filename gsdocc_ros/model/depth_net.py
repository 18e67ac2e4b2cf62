"""Camera-aware depth net (``depth_net``, CM_DepthNet in BEVDepth style): depth bins and context.

Attribute names follow the official checkpoint keys (doc section 2.2).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsdocc_ros.model.layers import BasicBlock, conv_bn_relu
from gsdocc_ros.model.inputs import ModelInputs


MLP_INPUT_SIZE = 27
"""Camera parameters per camera fed to the depth net's MLPs."""


def camera_mlp_input(inputs: ModelInputs) -> Tensor:
    """The 27 camera parameters per camera, in the official order -> [B,N,27].

    fx, fy, cx, cy; post_rot 00, 01, post_tran 0, post_rot 10, 11, post_tran 1;
    bda 00, 01, 10, 11, 22; then the camera -> key-ego [R | t] flattened row-major.
    """
    B, N = inputs.rots.shape[:2]
    k, pr, pt = inputs.intrins, inputs.post_rots, inputs.post_trans
    bda = inputs.bda[:, None].expand(B, N, 3, 3)  # [B,N,3,3]
    columns = [
        k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2],
        pr[..., 0, 0], pr[..., 0, 1], pt[..., 0], pr[..., 1, 0], pr[..., 1, 1], pt[..., 1],
        bda[..., 0, 0], bda[..., 0, 1], bda[..., 1, 0], bda[..., 1, 1], bda[..., 2, 2],
    ]
    extrinsics = torch.cat([inputs.rots, inputs.trans[..., None]], dim=-1).reshape(B, N, 12)  # [B,N,12]
    return torch.cat([torch.stack(columns, dim=-1), extrinsics], dim=-1)  # [B,N,27]


class Mlp(nn.Module):
    """Linear -> ReLU -> Linear (dropout 0 in the official config, so none here)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        """x [M,Cin] -> [M,Cout]."""
        return self.fc2(self.act(self.fc1(x)))


class SELayer(nn.Module):
    """Gate a feature map by a sigmoid of a per-camera vector (the camera-awareness)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, channels, 1)
        self.act = nn.ReLU()
        self.conv_expand = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor, vector: Tensor) -> Tensor:
        """x [M,C,H,W] gated by vector [M,C,1,1] -> [M,C,H,W]."""
        return x * self.gate(self.conv_expand(self.act(self.conv_reduce(vector))))


class ASPPBranch(nn.Module):
    """One atrous branch: conv (no bias) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding,
                                     dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """x [M,Cin,H,W] -> [M,Cout,H,W]."""
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: dilations 1, 6, 12, 18 plus an image-pool branch."""

    def __init__(self, in_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.aspp1 = ASPPBranch(in_channels, mid_channels, 1, dilation=1)
        self.aspp2 = ASPPBranch(in_channels, mid_channels, 3, dilation=6)
        self.aspp3 = ASPPBranch(in_channels, mid_channels, 3, dilation=12)
        self.aspp4 = ASPPBranch(in_channels, mid_channels, 3, dilation=18)
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), *conv_bn_relu(nn.Conv2d(in_channels, mid_channels, 1, bias=False)))
        self.conv1 = nn.Conv2d(5 * mid_channels, in_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        """x [M,C,H,W] -> [M,C,H,W]."""
        pooled = self.global_avg_pool(x)  # [M,mid,1,1]
        pooled = F.interpolate(pooled, size=x.shape[2:], mode="bilinear", align_corners=True)  # [M,mid,H,W]
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled]
        x = torch.cat(branches, dim=1)  # [M,5*mid,H,W]
        return self.dropout(self.relu(self.bn1(self.conv1(x))))


class CMDepthNet(nn.Module):
    """Predicts a softmax depth distribution and a context feature per pixel, both gated by the camera."""

    def __init__(self, in_channels: int = 512, mid_channels: int = 512, context_channels: int = 80,
                 depth_channels: int = 80) -> None:
        super().__init__()
        self.reduce_conv = conv_bn_relu(nn.Conv2d(in_channels, mid_channels, 3, padding=1))
        self.context_conv = nn.Conv2d(mid_channels, context_channels, 1)
        self.bn = nn.BatchNorm1d(MLP_INPUT_SIZE)
        self.depth_mlp = Mlp(MLP_INPUT_SIZE, mid_channels, mid_channels)
        self.depth_se = SELayer(mid_channels)
        self.context_mlp = Mlp(MLP_INPUT_SIZE, mid_channels, mid_channels)
        self.context_se = SELayer(mid_channels)
        self.depth_conv = nn.Sequential(
            BasicBlock(mid_channels, mid_channels),
            BasicBlock(mid_channels, mid_channels),
            BasicBlock(mid_channels, mid_channels),
            ASPP(mid_channels, mid_channels),
            nn.Conv2d(mid_channels, depth_channels, 1),
        )

    def forward(self, feats: Tensor, mlp_input: Tensor) -> tuple[Tensor, Tensor]:
        """feats [B,N,Cin,H,W], mlp_input [B,N,27] -> (depth [B,N,D,H,W] softmax over D, context [B,N,C,H,W])."""
        B, N = feats.shape[:2]
        params = self.bn(mlp_input.reshape(B * N, MLP_INPUT_SIZE))  # [B*N,27]
        x = self.reduce_conv(feats.flatten(0, 1))  # [B*N,mid,H,W]
        context = self.context_se(x, self.context_mlp(params)[..., None, None])  # [B*N,mid,H,W]
        context = self.context_conv(context)  # [B*N,C,H,W]
        depth = self.depth_se(x, self.depth_mlp(params)[..., None, None])  # [B*N,mid,H,W]
        depth = self.depth_conv(depth).softmax(dim=1)  # [B*N,D,H,W]
        return depth.unflatten(0, (B, N)), context.unflatten(0, (B, N))  # [B,N,D,H,W], [B,N,C,H,W]
