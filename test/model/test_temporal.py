"""Temporal history: warp direction and axes, reset and age semantics, commit=False, buffer reuse."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from gsdocc_ros.model.layers import conv_bn_relu
from gsdocc_ros.model.temporal import TemporalCache, fuse_history, warp_history

C = 4  # reduced BEV channels (80 in the model); the grid stays the official 100x100 of 0.8 m
EYE3 = torch.eye(3).unsqueeze(0)  # [1,3,3] identity bda


def motion(yaw_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> Tensor:
    """[1,4,4] current ego -> previous ego transform: yaw about z, then translation."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    out = torch.eye(4, dtype=torch.float64)
    out[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    out[0, 3], out[1, 3] = tx, ty
    return out.unsqueeze(0)


def hot_cell(iy: int, ix: int, channels: int = 1) -> Tensor:
    """[1,channels,100,100] zeros with a 1 at row iy (ego y) and column ix (ego x)."""
    bev = torch.zeros(1, channels, 100, 100)
    bev[:, :, iy, ix] = 1.0
    return bev


def peak(bev: Tensor) -> tuple[int, int]:
    """(iy, ix) of the largest value of channel 0 of [1,C,Y,X]."""
    flat = int(bev[0, 0].argmax())
    return flat // bev.shape[-1], flat % bev.shape[-1]


def warp(bev: Tensor, curr_to_prev: Tensor, bda: Tensor | None = None) -> Tensor:
    bda4 = torch.eye(4, dtype=torch.float64).unsqueeze(0) if bda is None else bda
    return warp_history(bev, curr_to_prev, bda4, bda4, TemporalCache().grid)


@pytest.fixture
def convs() -> tuple[nn.Module, nn.Module]:
    """Random eval-mode time conv [*,C+1] -> [*,C] and cat conv [*,16C] -> [*,8]."""
    torch.manual_seed(0)
    return conv_bn_relu(nn.Conv2d(C + 1, C, 1)).eval(), conv_bn_relu(nn.Conv2d(16 * C, 8, 1)).eval()


def record_time_channel(time_conv: nn.Module) -> list[Tensor]:
    """Collect, per call, the time channel (one value per slot) that time_conv receives."""
    seen: list[Tensor] = []
    time_conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, -1, 0, 0].clone()))
    return seen


def test_temporal_forward_motion_in_x_moves_features_minus_one_cell_along_w() -> None:
    warped = warp(hot_cell(40, 60), motion(tx=0.8))
    assert peak(warped) == (40, 59)
    assert warped[0, 0, 40, 59] == pytest.approx(1.0, abs=1e-4) and warped.sum() == pytest.approx(1.0, abs=1e-4)


def test_temporal_motion_in_y_moves_features_along_h() -> None:
    assert peak(warp(hot_cell(40, 60), motion(ty=0.8))) == (39, 60)
    assert peak(warp(hot_cell(40, 60), motion(ty=-1.6))) == (42, 60)


def test_temporal_yaw_90_about_the_grid_centre() -> None:
    # Metres origin = cell index 50 (corner offset -40, 0.8 m cells). Current point (x, y) = (8, 4) m, i.e. cell
    # (ix 60, iy 55), is (-4, 8) m in the previous frame after a +90 deg yaw: cell (ix 45, iy 60).
    warped = warp(hot_cell(60, 45), motion(yaw_deg=90.0))
    assert peak(warped) == (55, 60)
    assert warped[0, 0, 55, 60] == pytest.approx(1.0, abs=1e-4) and warped.sum() == pytest.approx(1.0, abs=1e-4)


def test_temporal_warp_undoes_the_bda_flip() -> None:
    flip_x = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64)).unsqueeze(0)
    assert peak(warp(hot_cell(40, 60), motion(tx=0.8), bda=flip_x)) == (40, 61)  # x mirrored: +1 cell along W


def test_temporal_cache_stores_the_warped_history(convs) -> None:
    cache = TemporalCache()
    fuse_history(hot_cell(40, 60, C), cache, motion(), EYE3, *convs, start_of_sequence=True)
    fuse_history(torch.zeros(1, C, 100, 100), cache, motion(tx=0.8), EYE3, *convs, start_of_sequence=False)
    slots = cache.state()["bev"].view(1, 15, C, 100, 100)
    assert slots[0, 0].abs().max() == 0  # slot 0 = the current (zero) frame
    assert peak(slots[:, 1]) == (40, 59) and slots[0, 1, :, 40, 59] == pytest.approx([1.0] * C, abs=1e-4)


def test_temporal_ages_follow_reset_semantics(convs) -> None:
    time_conv, cat_conv = convs
    seen = record_time_channel(time_conv)
    cache = TemporalCache()
    for k in range(18):
        fuse_history(torch.randn(1, C, 100, 100), cache, motion(tx=0.3), EYE3, time_conv, cat_conv,
                     start_of_sequence=(k == 0))
        expected = [min(j, k) for j in range(16)]  # [0, 1, ..., k, k, ..., k], capped at 15
        assert seen[-1].tolist() == [0.5 * a for a in expected]
        assert cache.state()["ages"][0].tolist() == expected[:15]
    fuse_history(torch.randn(1, C, 100, 100), cache, motion(), EYE3, time_conv, cat_conv, start_of_sequence=True)
    assert seen[-1].abs().max() == 0 and cache.state()["sequence"] == 2.0 and cache.state()["frames"] == 1.0
    cache.reset()
    assert cache.is_empty
    fuse_history(torch.randn(1, C, 100, 100), cache, motion(), EYE3, time_conv, cat_conv, start_of_sequence=False)
    assert seen[-1].abs().max() == 0 and cache.state()["sequence"] == 3.0


def test_temporal_first_call_is_a_reset(convs) -> None:
    cache = TemporalCache()
    assert cache.is_empty and "bev" not in cache.state()
    bev = torch.randn(1, C, 100, 100)
    fuse_history(bev, cache, motion(), EYE3, *convs, start_of_sequence=False)
    state = cache.state()
    assert not cache.is_empty and state["ages"].abs().max() == 0
    # every slot is the current frame; the identity warp adds float32 rounding only
    torch.testing.assert_close(state["bev"], bev.repeat(1, 15, 1, 1), atol=1e-4, rtol=0)


def test_temporal_uncommitted_frame_leaves_the_cache_unchanged(convs) -> None:
    time_conv, cat_conv = convs
    seen = record_time_channel(time_conv)
    cache = TemporalCache()
    for k in range(3):
        fuse_history(torch.randn(1, C, 100, 100), cache, motion(tx=0.5), EYE3, time_conv, cat_conv, k == 0)
    before = {k: v.clone() if isinstance(v, Tensor) else v for k, v in cache.state().items()}
    bev = torch.randn(1, C, 100, 100)
    fused = fuse_history(bev, cache, motion(yaw_deg=3.0, tx=0.2), EYE3, time_conv, cat_conv, False, commit=False,
                         elapsed_steps=1 / 6)
    assert seen[-1].tolist() == pytest.approx([0.0] + [0.5 * (a + 1 / 6) for a in before["ages"][0].tolist()])
    after = cache.state()
    assert all(torch.equal(v, after[k]) if isinstance(v, Tensor) else v == after[k] for k, v in before.items())
    # the committed twin computes the same output for the same inputs
    twin = copy.deepcopy(cache)
    committed = fuse_history(bev, twin, motion(yaw_deg=3.0, tx=0.2), EYE3, time_conv, cat_conv, False,
                             elapsed_steps=1 / 6)
    assert torch.equal(fused, committed) and not torch.equal(twin.state()["ages"], before["ages"])


def test_temporal_uncommitted_first_call_keeps_the_cache_empty(convs) -> None:
    cache = TemporalCache()
    fused = fuse_history(torch.randn(1, C, 100, 100), cache, motion(), EYE3, *convs, False, commit=False)
    assert fused.shape == (1, 8, 100, 100) and cache.is_empty and "bev" not in cache.state()


def test_temporal_buffers_are_reused_across_steps(convs) -> None:
    cache = TemporalCache()
    pointers = set()
    for k in range(5):
        fuse_history(torch.randn(1, C, 100, 100), cache, motion(tx=0.4), EYE3, *convs, start_of_sequence=k in (0, 3))
        pointers.add(tuple(cache.state()[name].data_ptr() for name in ("bev", "ages", "bda")))
    assert len(pointers) == 1


def test_temporal_history_is_detached_from_autograd(convs) -> None:
    cache = TemporalCache()
    bev = torch.randn(1, C, 100, 100, requires_grad=True)
    fused = fuse_history(bev, cache, motion(), EYE3, *convs, start_of_sequence=True)
    assert fused.requires_grad and not cache.state()["bev"].requires_grad


def test_temporal_mismatched_history_is_rejected(convs) -> None:
    cache = TemporalCache()
    fuse_history(torch.randn(1, C, 100, 100), cache, motion(), EYE3, *convs, start_of_sequence=True)
    with pytest.raises(ValueError, match="reset the cache"):
        fuse_history(torch.randn(2, C, 100, 100), cache, motion().repeat(2, 1, 1), EYE3.repeat(2, 1, 1), *convs,
                     start_of_sequence=False)
    with pytest.raises(ValueError, match="grid"):
        fuse_history(torch.randn(1, C, 50, 100), cache, motion(), EYE3, *convs, start_of_sequence=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_temporal_cuda_matches_cpu(convs) -> None:
    bevs = [torch.randn(1, C, 100, 100) for _ in range(3)]
    outputs = []
    for device in ("cpu", "cuda"):
        cache = TemporalCache()
        time_conv, cat_conv = (copy.deepcopy(m).to(device) for m in convs)
        for k, bev in enumerate(bevs):
            fused = fuse_history(bev.to(device), cache, motion(yaw_deg=5.0, tx=0.7).to(device), EYE3.to(device),
                                 time_conv, cat_conv, start_of_sequence=k == 0)
        assert cache.state()["bev"].device.type == device
        outputs.append(fused.cpu())
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-4, rtol=1e-4)
