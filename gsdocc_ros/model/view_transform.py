"""LSS forward projection (checkpoint attribute ``forward_projection``): lift image features into ego voxels.

Every frustum point (pixel u, v of the network input at depth bin d) is mapped to the key-ego frame and
splatted into a 100x100x8 grid of 0.8 m voxels with weight depth * context (a plain sum, gsdocc_model.md
section 2.4). The splat is a sparse matrix product: for a fixed calibration, voxel v receives
sum over pixels p of W[v, p] * context[p], where W[v, p] sums the depth probabilities of p's bins landing in v.
The sparsity pattern of W (which the official code calls the ranks) is computed once per calibration and
reused while the calibration tensors stay exactly equal; only W's values change per frame. Building W needs
data-dependent sizes (nonzero, unique), which block the host on a GPU; ``bev_pool_scatter`` instead adds every
frustum point into its voxel with one ``index_add_`` of fixed size, the formulation the runner uses on CUDA.

Shapes follow the legend of gsdocc_ros.model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gsdocc_ros.model.config import GridConfig, ModelConfig
from gsdocc_ros.model.layers import inverse
from gsdocc_ros.model.inputs import ModelInputs


def create_frustum(cfg: ModelConfig) -> Tensor:
    """Frustum points (D, H, W, 3) as (u, v, d): input-image pixels linspace(0, size - 1, feature size), bin starts."""
    in_h, in_w = cfg.image.input_size
    feat_h, feat_w = cfg.image.feature_size
    depth = torch.arange(*cfg.grid.depth, dtype=torch.float32)  # (D,)
    u = torch.linspace(0, in_w - 1, feat_w, dtype=torch.float32)  # (W,)
    v = torch.linspace(0, in_h - 1, feat_h, dtype=torch.float32)  # (H,)
    d_grid, v_grid, u_grid = torch.meshgrid(depth, v, u, indexing="ij")  # (D, H, W) each
    return torch.stack([u_grid, v_grid, d_grid], dim=-1)  # (D, H, W, 3)


def frustum_to_ego(frustum: Tensor, rots: Tensor, trans: Tensor, intrins: Tensor, post_rots: Tensor,
                   post_trans: Tensor, bda: Tensor) -> Tensor:
    """Key-ego coordinates (B, N, D, H, W, 3) of the frustum points, in float32 whatever autocast says.

    Order as the official code: undo the crop (post_trans) then the resize (inverse post_rot), scale (u, v) by d,
    apply R K^-1, add t, apply bda.
    """
    batch, cams = rots.shape[:2]
    with torch.autocast(device_type=frustum.device.type, enabled=False):
        rots, trans, intrins, post_rots, post_trans, bda = (
            t.float() for t in (rots, trans, intrins, post_rots, post_trans, bda))
        points = frustum.float() - post_trans.view(batch, cams, 1, 1, 1, 3)  # (B, N, D, H, W, 3)
        points = inverse(post_rots).view(batch, cams, 1, 1, 1, 3, 3).matmul(points.unsqueeze(-1))  # (..., 3, 1)
        points = torch.cat([points[..., :2, :] * points[..., 2:3, :], points[..., 2:3, :]], dim=-2)  # (u d, v d, d)
        combine = rots.matmul(inverse(intrins))  # (B, N, 3, 3)
        points = combine.view(batch, cams, 1, 1, 1, 3, 3).matmul(points).squeeze(-1)  # (B, N, D, H, W, 3)
        points = points + trans.view(batch, cams, 1, 1, 1, 3)
        return bda.view(batch, 1, 1, 1, 1, 3, 3).matmul(points.unsqueeze(-1)).squeeze(-1)  # (B, N, D, H, W, 3)


def voxel_coords(points: Tensor, lower: Tensor, interval: Tensor) -> Tensor:
    """Integer voxel coordinates (..., 3) as (ix, iy, iz): (p - lower) / interval truncated toward zero.

    Truncation, not floor, is the official rule: points up to one cell below the grid land in cell 0.
    """
    return ((points - lower) / interval).long()  # (..., 3)


def _check_shape(tensor: Tensor, shape: tuple[int | None, ...], name: str) -> None:
    """Raise ValueError naming ``name`` unless ``tensor`` has ``shape`` (None matches any size)."""
    if tensor.dim() != len(shape) or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
        expected = "[" + ",".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {expected}, got [{','.join(str(s) for s in tensor.shape)}]")


@dataclass(frozen=True)
class PoolIndices:
    """Sparsity pattern of the splat matrix W (B*Y*X*Z voxels x B*N*H*W pixels) for one calibration."""

    crow: Tensor
    """(B*Y*X*Z + 1,) CSR row pointers of W over voxel ranks ((b*Y + iy)*X + ix)*Z + iz."""
    col: Tensor
    """(P,) flat pixel index (b, n, h, w) of each non-zero of W, P unique (voxel, pixel) pairs."""
    depth_index: Tensor
    """(K,) flat index (b, n, d, h, w) into depth of each kept frustum point."""
    pair_index: Tensor
    """(K,) the non-zero of W that each kept frustum point adds its depth to."""
    size: tuple[int, int]
    """Shape of W."""


def voxel_ranks(points: Tensor, lower: Tensor, interval: Tensor, size_xyz: tuple[int, int, int]
                ) -> tuple[Tensor, Tensor]:
    """Voxel rank ((b*Y + iy)*X + ix)*Z + iz of each frustum point (B, N, D, H, W, 3), and whether it is in the grid.

    Both (B, N, D, H, W); the sizes are Python ints so that nothing is read back from the device.
    """
    size_x, size_y, size_z = size_xyz
    ix, iy, iz = voxel_coords(points, lower, interval).unbind(dim=-1)  # (B, N, D, H, W) each
    inside = (ix >= 0) & (ix < size_x) & (iy >= 0) & (iy < size_y) & (iz >= 0) & (iz < size_z)
    b = torch.arange(points.shape[0], device=points.device).view(-1, 1, 1, 1, 1)
    return ((b * size_y + iy) * size_x + ix) * size_z + iz, inside


def compute_pool_indices(points: Tensor, lower: Tensor, interval: Tensor, size_xyz: tuple[int, int, int]
                         ) -> PoolIndices:
    """Voxelise frustum points (B, N, D, H, W, 3) and build W's sparsity pattern (kept: 0 <= index < size)."""
    batch, cams, depth_bins, height, width, _ = points.shape
    ranks, inside = voxel_ranks(points, lower, interval, size_xyz)
    depth_index = inside.view(-1).nonzero().squeeze(1)  # (K,)
    voxel = ranks.view(-1)[depth_index]  # (K,)
    camera = depth_index // (depth_bins * height * width)  # (K,) flat (b, n)
    pixel = camera * (height * width) + depth_index % (height * width)  # (K,)
    num_pixels = batch * cams * height * width
    pairs, pair_index = torch.unique(voxel * num_pixels + pixel, return_inverse=True)  # (P,), (K,)
    num_voxels = batch * math.prod(size_xyz)
    crow = torch.zeros(num_voxels + 1, dtype=torch.long, device=points.device)
    crow[1:] = torch.bincount(pairs // num_pixels, minlength=num_voxels).cumsum(0)
    return PoolIndices(crow=crow, col=pairs % num_pixels, depth_index=depth_index, pair_index=pair_index,
                       size=(num_voxels, num_pixels))


def bev_pool(depth: Tensor, context: Tensor, indices: PoolIndices, size_xyz: tuple[int, int, int]) -> Tensor:
    """Splat with precomputed indices: depth (B,N,D,H,W), context (B,N,C,H,W) -> (B,C,Y,X,Z), float32 sums.

    The result is a permuted view of a (B, Y, X, Z, C) tensor, like the official permute of the op's output.
    """
    batch, channels = depth.shape[0], context.shape[2]
    size_x, size_y, size_z = size_xyz
    with torch.autocast(device_type=depth.device.type, enabled=False):
        weights = depth.reshape(-1).float()[indices.depth_index]  # (K,)
        values = torch.zeros(indices.col.numel(), dtype=torch.float32, device=depth.device)
        values.index_add_(0, indices.pair_index, weights)  # (P,) sum over bins of a pixel in one voxel
        with warnings.catch_warnings():  # CSR @ dense is all we use; silence torch's "beta state" notice
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            splat = torch.sparse_csr_tensor(indices.crow, indices.col, values, indices.size,
                                            check_invariants=False)  # W: (B*Y*X*Z, B*N*H*W)
        feats = context.float().permute(0, 1, 3, 4, 2).reshape(-1, channels)  # (B*N*H*W, C)
        out = splat @ feats  # (B*Y*X*Z, C)
    return out.view(batch, size_y, size_x, size_z, channels).permute(0, 4, 1, 2, 3)  # (B, C, Y, X, Z)


def scatter_index(points: Tensor, lower: Tensor, interval: Tensor, size_xyz: tuple[int, int, int]) -> Tensor:
    """Voxel rank (B, N, D, H, W) of each frustum point (B, N, D, H, W, 3), outside points -> B*Y*X*Z (dropped)."""
    ranks, inside = voxel_ranks(points, lower, interval, size_xyz)
    return torch.where(inside, ranks, points.shape[0] * math.prod(size_xyz))  # (B, N, D, H, W)


def splat_scatter(depth: Tensor, context: Tensor, voxel: Tensor, size_xyz: tuple[int, int, int]) -> Tensor:
    """Add every frustum point into its voxel with one fixed-size ``index_add_`` (exports as ScatterND add).

    depth (B,N,D,H,W), context (B,N,C,H,W), voxel (B,N,D,H,W) from ``scatter_index`` -> (B,C,Y,X,Z) float32 sums,
    a permuted view like ``bev_pool``'s. Holds a (B*N*D*H*W, C) float32 product (119 MB at 256x704).
    """
    batch, cams, depth_bins, height, width = depth.shape
    channels = context.shape[2]
    size_x, size_y, size_z = size_xyz
    num_voxels = batch * size_y * size_x * size_z
    with torch.autocast(device_type=depth.device.type, enabled=False):
        feats = context.float().permute(0, 1, 3, 4, 2).reshape(batch * cams, 1, height * width, channels)
        weighted = depth.float().reshape(batch * cams, depth_bins, height * width, 1) * feats  # (B*N, D, H*W, C)
        out = torch.zeros(num_voxels + 1, channels, dtype=torch.float32, device=depth.device)
        out.index_add_(0, voxel.reshape(-1), weighted.reshape(-1, channels))  # (B*Y*X*Z + 1, C)
    return out[:-1].view(batch, size_y, size_x, size_z, channels).permute(0, 4, 1, 2, 3)  # (B, C, Y, X, Z)


def bev_pool_scatter(depth: Tensor, context: Tensor, points: Tensor, lower: Tensor, interval: Tensor,
                     size_xyz: tuple[int, int, int]) -> Tensor:
    """Splat with a fixed-size scatter: no data-dependent shapes, so no host-device sync on CUDA.

    depth (B,N,D,H,W), context (B,N,C,H,W), points (B,N,D,H,W,3) key-ego metres -> (B,C,Y,X,Z) float32 sums, a
    permuted view like ``bev_pool``'s. Points outside the grid go to one extra voxel that is dropped.
    """
    with torch.autocast(device_type=depth.device.type, enabled=False):
        voxel = scatter_index(points, lower, interval, size_xyz)  # (B, N, D, H, W)
    return splat_scatter(depth, context, voxel, size_xyz)


def bev_pool_reference(depth: Tensor, context: Tensor, points: Tensor, grid: GridConfig) -> Tensor:
    """Slow, obviously correct twin of the splat: loop over cameras and bins, accumulate in float64.

    depth (B,N,D,H,W), context (B,N,C,H,W), points (B,N,D,H,W,3) key-ego metres -> (B,C,Y,X,Z) float32.
    """
    batch, cams, depth_bins = depth.shape[:3]
    channels = context.shape[2]
    size_x, size_y, size_z = grid.size
    lower = torch.tensor([grid.x[0], grid.y[0], grid.z[0]], dtype=torch.float32, device=points.device)
    interval = torch.tensor([grid.x[2], grid.y[2], grid.z[2]], dtype=torch.float32, device=points.device)
    size = torch.tensor(grid.size, device=points.device)
    out = torch.zeros(batch, size_y, size_x, size_z, channels, dtype=torch.float64, device=depth.device)
    for b in range(batch):
        for n in range(cams):
            pixel_feats = context[b, n].reshape(channels, -1).t().double()  # (H*W, C)
            for d in range(depth_bins):
                coords = voxel_coords(points[b, n, d], lower, interval).reshape(-1, 3)  # (H*W, 3)
                inside = ((coords >= 0) & (coords < size)).all(dim=1)  # (H*W,)
                weight = depth[b, n, d].reshape(-1, 1).double()  # (H*W, 1)
                ix, iy, iz = coords[inside].unbind(dim=1)
                out[b].index_put_((iy, ix, iz), (weight * pixel_feats)[inside], accumulate=True)
    return out.permute(0, 4, 1, 2, 3).float()  # (B, C, Y, X, Z)


SPLATS = ("indices", "scatter")
"""How LSSViewTransform splats: a sparse product with per-calibration indices, or one fixed-size scatter."""


class LSSViewTransform(nn.Module):
    """Forward projection: depth (B,N,D,H,W) x context (B,N,C,H,W) -> voxel features (B,C,Y,X,Z).

    ``splat`` "indices" (default) pools with W's sparsity pattern, reused while the calibration is exactly unchanged
    when ``index_cache`` (default True); the counters ``index_cache_hits``/``index_cache_misses`` count look-ups
    (none while the cache is off). ``splat`` "scatter" pools with ``bev_pool_scatter`` and keeps no pattern: slower
    on a CPU, but it never blocks the host on a GPU. ``rebuilt`` gives the same module for another choice.
    Keep this module in float32 (use autocast for reduced precision): dx and bx define the voxel boundaries.
    """

    def __init__(self, cfg: ModelConfig = ModelConfig(), splat: str = "indices", index_cache: bool = True) -> None:
        super().__init__()
        if splat not in SPLATS:
            raise ValueError(f"splat: expected one of {SPLATS}, got {splat!r}")
        axes = (cfg.grid.x, cfg.grid.y, cfg.grid.z)
        self.dx = nn.Parameter(torch.tensor([step for _, _, step in axes]), requires_grad=False)
        self.bx = nn.Parameter(torch.tensor([lo + step / 2.0 for lo, _, step in axes]), requires_grad=False)
        self.nx = nn.Parameter(torch.tensor(cfg.grid.size, dtype=torch.long), requires_grad=False)
        self.register_buffer("frustum", create_frustum(cfg), persistent=False)  # (D, H, W, 3)
        self.cfg = cfg
        self.size_xyz = cfg.grid.size  # (X, Y, Z) as Python ints: shapes must not be read back from the device
        self.splat = splat
        self.index_cache = index_cache
        self.index_cache_hits = 0
        self.index_cache_misses = 0
        self._cache_key: tuple[Tensor, ...] | None = None
        self._cache_indices: PoolIndices | None = None

    def rebuilt(self, splat: str, index_cache: bool = True) -> LSSViewTransform:
        """This module's parameters, on its device, in a new module that splats with ``splat``."""
        other = LSSViewTransform(self.cfg, splat, index_cache).to(self.dx.device)
        other.load_state_dict(self.state_dict())
        return other

    def points(self, rots: Tensor, trans: Tensor, intrins: Tensor, post_rots: Tensor, post_trans: Tensor,
               bda: Tensor) -> Tensor:
        """Key-ego coordinates (B, N, D, H, W, 3) of this module's frustum for one calibration."""
        return frustum_to_ego(self.frustum, rots, trans, intrins, post_rots, post_trans, bda)

    def lower(self) -> Tensor:
        """(3,) the grid's lower corner in metres, (-40, -40, -1) for Occ3D."""
        return self.bx - self.dx / 2.0

    def pool_indices(self, rots: Tensor, trans: Tensor, intrins: Tensor, post_rots: Tensor, post_trans: Tensor,
                     bda: Tensor) -> PoolIndices:
        """W's sparsity pattern for a calibration: from the cache when every tensor is exactly unchanged."""
        calibration = (rots, trans, intrins, post_rots, post_trans, bda)
        lower = self.lower()
        if not self.index_cache:
            return compute_pool_indices(self.points(*calibration), lower, self.dx, self.size_xyz)
        key = tuple(t.detach() for t in (*calibration, self.dx, self.bx, self.nx))
        if self._cache_key is not None and all(
                a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
                for a, b in zip(key, self._cache_key)):
            self.index_cache_hits += 1
            return self._cache_indices  # type: ignore[return-value]
        self.index_cache_misses += 1
        self._cache_indices = compute_pool_indices(self.points(*calibration), lower, self.dx, self.size_xyz)
        self._cache_key = tuple(t.clone() for t in key)
        return self._cache_indices

    def forward(self, depth: Tensor, context: Tensor, inputs: ModelInputs) -> Tensor:
        """Splat depth (B,N,D,H,W) x context (B,N,C,H,W) with the calibration in ``inputs`` -> (B,C,Y,X,Z)."""
        depth_bins, height, width = self.frustum.shape[:3]
        batch, cams = inputs.rots.shape[:2]
        _check_shape(inputs.rots, (batch, cams, 3, 3), "inputs.rots")
        _check_shape(inputs.trans, (batch, cams, 3), "inputs.trans")
        _check_shape(inputs.intrins, (batch, cams, 3, 3), "inputs.intrins")
        _check_shape(inputs.post_rots, (batch, cams, 3, 3), "inputs.post_rots")
        _check_shape(inputs.post_trans, (batch, cams, 3), "inputs.post_trans")
        _check_shape(inputs.bda, (batch, 3, 3), "inputs.bda")
        _check_shape(depth, (batch, cams, depth_bins, height, width), "depth")
        _check_shape(context, (batch, cams, None, height, width), "context")
        calibration = (inputs.rots, inputs.trans, inputs.intrins, inputs.post_rots, inputs.post_trans, inputs.bda)
        if self.splat == "scatter":
            out = bev_pool_scatter(depth, context, self.points(*calibration), self.lower(), self.dx, self.size_xyz)
        else:
            out = bev_pool(depth, context, self.pool_indices(*calibration), self.size_xyz)
        return out.to(context.dtype)  # (B, C, Y, X, Z)
