"""Long-term BEV history (gsdocc_model.md 2.6): a cache of past BEV features, warped into the current ego frame
by the ego motion, tagged with their age and fused with the current BEV.

The history lives in plain tensors on the model's device (``TemporalCache``), not in the module's state dict.
Shapes follow the legend of gsdocc_ros.model (BEV tensors [B,C,Y,X]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsdocc_ros.model.config import GridConfig
from gsdocc_ros.model.layers import inverse


class TemporalCache:
    """The last ``num_frames`` committed BEV features, each already warped into the last committed ego frame.

    Buffers are allocated on the first committed frame and then overwritten in place; ``reset()`` (or a start of
    sequence) refills them. Ages are counted in history steps (0.5 s keyframes in training).
    """

    def __init__(self, num_frames: int = 15, grid: GridConfig = GridConfig()) -> None:
        if num_frames < 1:
            raise ValueError(f"TemporalCache: num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        self.grid = grid
        self.bev: Tensor | None = None  # [B, num_frames*C, Y, X], slot order newest first
        self.ages: Tensor | None = None  # [B, num_frames] float32, in steps
        self.bda: Tensor | None = None  # [B,4,4] float64, BEV augmentation of the last committed frame
        self.sequence = 0  # number of sequence starts committed so far (the official sequence id's role)
        self.frames = 0  # committed frames since the last sequence start, that one included
        self._filled = False

    def reset(self) -> None:
        """Make the next fuse a start of sequence; the buffers are kept for reuse."""
        self._filled = False

    @property
    def is_empty(self) -> bool:
        """True before the first committed frame and after ``reset()``."""
        return not self._filled

    def state(self) -> dict[str, Tensor | float]:
        """Contents for inspection: bev [B,15*C,Y,X], ages [B,15], bda [B,4,4] (live buffers, do not modify),
        sequence and frames counters; the tensors are absent before the first committed frame."""
        out: dict[str, Tensor | float] = {"sequence": float(self.sequence), "frames": float(self.frames)}
        if self.bev is not None and self.ages is not None and self.bda is not None:
            out.update(bev=self.bev, ages=self.ages, bda=self.bda)
        return out

    def history(self, curr_bev: Tensor, elapsed_steps: float) -> tuple[Tensor, Tensor, Tensor]:
        """Stored (bev, ages + elapsed_steps, bda), after checking they fit ``curr_bev`` [B,C,Y,X]."""
        if self.bev is None or self.ages is None or self.bda is None or self.is_empty:
            raise RuntimeError("TemporalCache: history requested from an empty cache; start a sequence first")
        B, C, Y, X = curr_bev.shape
        expected = (B, self.num_frames * C, Y, X)
        stored = self.bev
        if tuple(stored.shape) != expected or stored.device != curr_bev.device or stored.dtype != curr_bev.dtype:
            raise ValueError(f"TemporalCache: stored history {list(stored.shape)} {stored.dtype} on {stored.device} "
                             f"does not fit curr_bev {list(curr_bev.shape)} {curr_bev.dtype} on {curr_bev.device}; "
                             "reset the cache or start a sequence")
        return self.bev, self.ages + elapsed_steps, self.bda

    def store(self, slots: Tensor, ages: Tensor, bda: Tensor, start_of_sequence: bool) -> None:
        """Keep slots [B,num_frames,C,Y,X], their ages [B,num_frames] and bda [B,4,4], writing into the buffers."""
        B, N, C, Y, X = slots.shape
        if N != self.num_frames:
            raise ValueError(f"TemporalCache: expected {self.num_frames} slots to store, got {N}")
        bev, ages_buffer, bda_buffer = self.bev, self.ages, self.bda
        if bev is None or ages_buffer is None or bda_buffer is None or tuple(bev.shape) != (B, N * C, Y, X) \
                or bev.device != slots.device or bev.dtype != slots.dtype:
            bev = slots.new_empty(B, N * C, Y, X)
            ages_buffer = torch.empty(B, N, dtype=torch.float32, device=slots.device)
            bda_buffer = torch.empty(B, 4, 4, dtype=torch.float64, device=slots.device)
            self.bev, self.ages, self.bda = bev, ages_buffer, bda_buffer
        with torch.no_grad():  # history is data, never part of an autograd graph across frames
            bev.view(B, N, C, Y, X).copy_(slots)
            ages_buffer.copy_(ages)
            bda_buffer.copy_(bda)
        if start_of_sequence:
            self.sequence += 1
            self.frames = 0
        self.frames += 1
        self._filled = True


def feat_to_bev(grid: GridConfig, device: torch.device | str = "cpu") -> Tensor:
    """[4,4] float64 map from BEV cell index (x, y, z, 1) to ego metres: cell size on x/y, offset = grid corner."""
    matrix = torch.eye(4, dtype=torch.float64, device=device)
    matrix[0, 0], matrix[1, 1] = grid.x[2], grid.y[2]
    matrix[0, 3], matrix[1, 3] = grid.x[0], grid.y[0]
    return matrix


def history_flow(curr_to_prev_ego: Tensor, bda_prev: Tensor, bda_curr: Tensor, grid: GridConfig) -> Tensor:
    """[B,4,4] float32 map from current BEV cell index to previous cell index, composed in float64.

    curr_to_prev_ego [B,4,4] maps current ego coordinates to previous ones; bda_prev / bda_curr [B,4,4] are the
    BEV augmentations. Computed outside an exported graph: ONNX has no matrix inverse.
    """
    feat2bev = feat_to_bev(grid, curr_to_prev_ego.device)
    return (inverse(feat2bev) @ bda_prev.double() @ curr_to_prev_ego.double()
            @ inverse(bda_curr.double()) @ feat2bev).float()  # [B,4,4]


def warp_with_flow(history: Tensor, flow: Tensor) -> Tensor:
    """Resample history [B,C,Y,X] at the cells flow [B,4,4] maps each current cell to (bilinear, zeros outside)."""
    B, _, Y, X = history.shape
    iy, ix = torch.meshgrid(torch.arange(Y, dtype=torch.float32, device=history.device),
                            torch.arange(X, dtype=torch.float32, device=history.device), indexing="ij")
    ones = torch.ones_like(ix)
    points = torch.stack([ix, iy, ones, ones], dim=-1)  # [Y,X,4] homogeneous cell indices, z = 1
    source = torch.einsum("bij,yxj->byxi", flow, points)[..., :2]  # [B,Y,X,2] previous (x, y) cell indices
    sample_grid = source / source.new_tensor([X - 1, Y - 1]) * 2 - 1  # [B,Y,X,2] in [-1, 1]
    warped = F.grid_sample(history.float(), sample_grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped.to(history.dtype)  # [B,C,Y,X]


def warp_history(history: Tensor, curr_to_prev_ego: Tensor, bda_prev: Tensor, bda_curr: Tensor,
                 grid: GridConfig) -> Tensor:
    """Resample history [B,C,Y,X] from the previous into the current ego frame (bilinear, zeros outside).

    curr_to_prev_ego [B,4,4] maps current ego coordinates to previous ones; bda_prev / bda_curr [B,4,4] are the
    BEV augmentations. The 4x4 chain is composed in float64, then cast to float32.
    """
    return warp_with_flow(history, history_flow(curr_to_prev_ego, bda_prev, bda_curr, grid))


def bda_to_4x4(bda: Tensor) -> Tensor:
    """bda [B,3,3] -> [B,4,4] float64 with no translation."""
    out = torch.eye(4, dtype=torch.float64, device=bda.device).repeat(bda.shape[0], 1, 1)
    out[:, :3, :3] = bda.double()
    return out


def fuse_history(curr_bev: Tensor, cache: TemporalCache, curr_to_prev_ego: Tensor, bda: Tensor,
                 time_conv: nn.Module, cat_conv: nn.Module, start_of_sequence: bool, commit: bool = True,
                 elapsed_steps: float = 1.0, step_s: float = 0.5) -> Tensor:
    """Fuse curr_bev [B,C,Y,X] with the warped history -> [B,256,Y,X]; advance ``cache`` when ``commit``.

    curr_to_prev_ego [B,4,4]: current ego -> ego of the last committed frame (identity at a start); bda [B,3,3].
    A start of sequence (also the first call and the call after ``reset()``) fills every history slot with the
    current BEV at age 0. Otherwise stored ages grow by ``elapsed_steps``. ``commit=False`` (frames between history
    pushes) computes the same output but leaves the cache untouched. time_conv: [B*16,C+1,Y,X] -> [B*16,C,Y,X],
    shared over slots; cat_conv: [B,16*C,Y,X] -> [B,256,Y,X].
    """
    if curr_bev.dim() != 4:
        raise ValueError(f"fuse_history: curr_bev must be [B,C,Y,X], got {list(curr_bev.shape)}")
    B, C, Y, X = curr_bev.shape
    grid_x, grid_y, _ = cache.grid.size
    if (Y, X) != (grid_y, grid_x):
        raise ValueError(f"fuse_history: curr_bev (Y,X) = {(Y, X)} does not match the cache grid {(grid_y, grid_x)}")
    if tuple(curr_to_prev_ego.shape) != (B, 4, 4):
        raise ValueError(f"fuse_history: curr_to_prev_ego must be [{B},4,4], got {list(curr_to_prev_ego.shape)}")
    if tuple(bda.shape) != (B, 3, 3):
        raise ValueError(f"fuse_history: bda must be [{B},3,3], got {list(bda.shape)}")
    N = cache.num_frames
    bda_curr = bda_to_4x4(bda)  # [B,4,4]
    start = start_of_sequence or cache.is_empty
    if start:
        history = curr_bev.repeat(1, N, 1, 1)  # [B,N*C,Y,X] current frame in every slot
        ages = curr_bev.new_zeros(B, N, dtype=torch.float32)
        bda_prev = bda_curr
    else:
        history, ages, bda_prev = cache.history(curr_bev, elapsed_steps)
    flow = history_flow(curr_to_prev_ego, bda_prev, bda_curr, cache.grid)  # [B,4,4]
    fused, slots, slot_ages = fuse_slots(curr_bev, history, ages, flow, time_conv, cat_conv, step_s)
    if commit:
        cache.store(slots, slot_ages, bda_curr, start)
    return fused


def fuse_slots(curr_bev: Tensor, history: Tensor, ages: Tensor, flow: Tensor, time_conv: nn.Module,
               cat_conv: nn.Module, step_s: float) -> tuple[Tensor, Tensor, Tensor]:
    """The fusion arithmetic, free of Python control flow (the exported graph runs it too).

    curr_bev [B,C,Y,X], history [B,N*C,Y,X] in the last committed ego frame, ages [B,N] in steps, flow [B,4,4]
    (``history_flow``) -> (fused [B,256,Y,X], the next history slots [B,N,C,Y,X] (current frame first, the
    oldest dropped), their ages [B,N]).
    """
    B, C, Y, X = curr_bev.shape
    N = ages.shape[1]
    warped = warp_with_flow(history, flow)  # [B,N*C,Y,X]
    slots = torch.cat([curr_bev, warped], dim=1).view(B, N + 1, C, Y, X)  # order [t, t-1, ..., t-N]
    slot_ages = torch.cat([ages.new_zeros(B, 1), ages], dim=1)  # [B,N+1]
    time = (slot_ages * step_s).to(curr_bev.dtype).view(B, N + 1, 1, 1, 1).expand(B, N + 1, 1, Y, X)
    feats = torch.cat([slots, time], dim=2).flatten(0, 1)  # [B*(N+1),C+1,Y,X]
    feats = time_conv(feats).reshape(B, -1, Y, X)  # [B,(N+1)*C,Y,X], channel = slot*C + c
    return cat_conv(feats), slots[:, :N], slot_ages[:, :N]  # [B,256,Y,X], [B,N,C,Y,X], [B,N]
