"""Re-parameterisable large-kernel 3-D block of the occupancy head (UniRepLKNet style, gsdocc_model.md 2.10).

The training form is the checkpoint layout and stays the reference twin; ``reparameterize()`` merges it in
place into the deploy form. Voxel tensors are channels-first [B, C, Y, X, Z]; kernels are (k, k, 1), so the
large kernel spans Y and X only (a depthwise 2-D conv per height slice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (kernel, dilation) of the parallel dilated branches for each supported large kernel size
_DILATED_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5))}


def fold_batch_norm(weight: Tensor, bias: Tensor | None,
                    bn: nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) -> tuple[Tensor, Tensor]:
    """Weight and bias (float64) of one layer equal to ``bn(layer(x))`` with the BN's running statistics.

    ``weight`` has the output channels first (conv or Linear layout); ``bias`` None means no bias.
    """
    scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()  # [Cout]
    shift = bias.double() if bias is not None else torch.zeros_like(scale)
    folded = weight.double() * scale.view((-1,) + (1,) * (weight.dim() - 1))
    return folded, bn.bias.double() + (shift - bn.running_mean.double()) * scale


def dilate_kernel(weight: Tensor, dilation: int) -> Tensor:
    """Dense kernel equal to a (k, k, 1) kernel run with dilation (r, r, 1): zeros inserted between taps."""
    channels, group_in, k, _, depth = weight.shape
    span = dilation * (k - 1) + 1
    dense = weight.new_zeros(channels, group_in, span, span, depth)  # [C,1,r(k-1)+1,r(k-1)+1,1]
    dense[:, :, ::dilation, ::dilation] = weight
    return dense


def _depthwise(channels: int, kernel: int, dilation: int) -> nn.Conv3d:
    """Depthwise (kernel, kernel, 1) conv without bias, dilated on Y and X, 'same' padding."""
    pad = dilation * (kernel - 1) // 2
    return nn.Conv3d(channels, channels, (kernel, kernel, 1), padding=(pad, pad, 0), dilation=(dilation, dilation, 1),
                     groups=channels, bias=False)


class DilatedReparamBlock3d(nn.Module):
    """Depthwise large-kernel conv plus parallel dilated small-kernel branches, each with its own BN.

    After ``reparameterize()`` only ``lk_origin`` (now with bias) remains, computing the same function.
    """

    def __init__(self, channels: int, kernel_size: tuple[int, int, int] = (11, 11, 1)) -> None:
        super().__init__()
        k = kernel_size[0]
        if kernel_size[1] != k or kernel_size[2] != 1 or k not in _DILATED_BRANCHES:
            raise ValueError(f"DilatedReparamBlock3d: kernel_size must be (k, k, 1) with k in "
                             f"{sorted(_DILATED_BRANCHES)}, got {kernel_size}")
        self.kernel_size = k
        self.branches = _DILATED_BRANCHES[k]
        self.deployed = False
        self.lk_origin = _depthwise(channels, k, 1)
        self.origin_bn = nn.BatchNorm3d(channels)
        for kernel, dilation in self.branches:
            self.add_module(f"dil_conv_k{kernel}_{dilation}", _depthwise(channels, kernel, dilation))
            self.add_module(f"dil_bn_k{kernel}_{dilation}", nn.BatchNorm3d(channels))

    def _branch(self, kernel: int, dilation: int) -> tuple[nn.Conv3d, nn.BatchNorm3d]:
        """The conv and BN of one dilated branch."""
        return getattr(self, f"dil_conv_k{kernel}_{dilation}"), getattr(self, f"dil_bn_k{kernel}_{dilation}")

    def forward(self, x: Tensor) -> Tensor:
        """x [B,C,Y,X,Z] -> [B,C,Y,X,Z]."""
        out = self.lk_origin(x)
        if self.deployed:
            return out
        out = self.origin_bn(out)
        for kernel, dilation in self.branches:
            conv, bn = self._branch(kernel, dilation)
            out = out + bn(conv(x))
        return out

    @torch.no_grad()
    def reparameterize(self, post_bn: nn.BatchNorm3d | None = None) -> None:
        """Merge every branch (and ``post_bn``, a BN applied right after this block) into ``lk_origin``."""
        if self.deployed:
            return
        weight, bias = fold_batch_norm(self.lk_origin.weight, None, self.origin_bn)  # [C,1,k,k,1], [C]
        for kernel, dilation in self.branches:
            conv, bn = self._branch(kernel, dilation)
            branch_weight, branch_bias = fold_batch_norm(conv.weight, None, bn)
            dense = dilate_kernel(branch_weight, dilation)  # [C,1,span,span,1]
            pad = (self.kernel_size - dense.shape[2]) // 2
            weight = weight + F.pad(dense, (0, 0, pad, pad, pad, pad))  # [C,1,k,k,1]
            bias = bias + branch_bias
            delattr(self, f"dil_conv_k{kernel}_{dilation}")
            delattr(self, f"dil_bn_k{kernel}_{dilation}")
        if post_bn is not None:
            weight, bias = fold_batch_norm(weight, bias, post_bn)
        dtype = self.lk_origin.weight.dtype
        self.lk_origin.weight = nn.Parameter(weight.to(dtype))
        self.lk_origin.bias = nn.Parameter(bias.to(dtype))
        del self.origin_bn
        self.deployed = True


class GRN(nn.Module):
    """Global response normalisation on channels-last [B,Y,X,Z,C]: L2 over Y, X, Z, divided by the channel mean."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, 1, channels))
        self.beta: nn.Parameter | None = nn.Parameter(torch.zeros(1, 1, 1, 1, channels))  # None once merged

    def forward(self, x: Tensor) -> Tensor:
        """x [B,Y,X,Z,C] -> [B,Y,X,Z,C]."""
        norm = torch.linalg.vector_norm(x, ord=2, dim=(1, 2, 3), keepdim=True)  # [B,1,1,1,C]
        response = norm / (norm.mean(dim=-1, keepdim=True) + 1e-6)  # [B,1,1,1,C]
        out = (self.gamma * response + 1) * x
        return out if self.beta is None else out + self.beta


class SEBlock3d(nn.Module):
    """Squeeze-excitation WITHOUT the sigmoid gate, as GSD-OCC's large-kernel block has it."""

    def __init__(self, channels: int, reduced_channels: int) -> None:
        super().__init__()
        self.down = nn.Conv3d(channels, reduced_channels, 1)
        self.up = nn.Conv3d(reduced_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x [B,C,Y,X,Z] -> [B,C,Y,X,Z], scaled per channel by an un-squashed excitation."""
        pooled = F.adaptive_avg_pool3d(x, 1)  # [B,C,1,1,1]
        return x * self.up(F.relu(self.down(pooled)))


class Permute(nn.Module):
    """Parameter-free axis permutation (channels-first <-> channels-last) inside a Sequential."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        """Permute ``x`` to ``self.dims``."""
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class UniRepLKNetBlock(nn.Module):
    """x + gamma * pwconv2(act(pwconv1(se(norm(dwconv(x)))))) on [B,C,Y,X,Z]; attribute names = checkpoint."""

    def __init__(self, channels: int = 80, kernel_size: tuple[int, int, int] = (11, 11, 1),
                 ffn_factor: int = 4) -> None:
        super().__init__()
        hidden = channels * ffn_factor
        self.deployed = False
        self.gamma = nn.Parameter(torch.full((channels,), 1e-6))
        self.dwconv = DilatedReparamBlock3d(channels, kernel_size)
        self.norm: nn.Module = nn.BatchNorm3d(channels)
        self.se = SEBlock3d(channels, channels // 4)
        self.pwconv1 = nn.Sequential(Permute(0, 2, 3, 4, 1), nn.Linear(channels, hidden))
        self.act = nn.Sequential(nn.GELU(), GRN(hidden))
        self.pwconv2 = nn.Sequential(nn.Linear(hidden, channels, bias=False), Permute(0, 4, 1, 2, 3),
                                     nn.BatchNorm3d(channels))

    def forward(self, x: Tensor) -> Tensor:
        """x [B,C,Y,X,Z] -> [B,C,Y,X,Z]."""
        y = self.se(self.norm(self.dwconv(x)))
        y = self.act(self.pwconv1(y))  # [B,Y,X,Z,4C]
        y = self.pwconv2(y)  # [B,C,Y,X,Z]
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1, 1)
        return x + y

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge in place into the deploy form (2.10): one biased depthwise conv, GRN with gamma only,
        and one biased Linear holding GRN beta, the pwconv2 BN and the layer scale. Same eval-mode output."""
        if self.deployed:
            return
        self.dwconv.reparameterize(post_bn=self.norm)
        self.norm = nn.Identity()
        grn, linear, bn = self.act[1], self.pwconv2[0], self.pwconv2[2]
        weight, bias = fold_batch_norm(linear.weight, linear.weight.double() @ grn.beta.double().flatten(), bn)
        scale = self.gamma.double()  # [C]
        merged = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device,
                           dtype=linear.weight.dtype)
        merged.weight.copy_(weight * scale[:, None])
        merged.bias.copy_(bias * scale)
        self.pwconv2 = nn.Sequential(merged, self.pwconv2[1])
        grn.beta = None
        self.gamma = None
        self.deployed = True

