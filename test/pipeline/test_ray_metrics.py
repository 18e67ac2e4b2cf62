"""RayIoU: hand-checked scenes, the fast caster against its step-by-step twin, real Occ3D and real poses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gsdocc_ros.pipeline.grid import FREE_INDEX, GridGeometry
from gsdocc_ros.pipeline.ray_metrics import (
    RayIoU,
    cast_rays,
    cast_rays_reference,
    lidar_ray_directions,
    scene_ray_origins,
)

CAR, TRUCK, MANMADE = 4, 10, 15
HALF_METRE = GridGeometry(origin=(-50.0, -50.0, -1.0), voxel_size=0.5, size=(200, 200, 16))
"""A grid of 0.5 m voxels, so that a shift of 1.5 m is a whole number of voxels."""


def both_casters(labels: np.ndarray, origins, directions, geometry: GridGeometry = HALF_METRE):
    """The fast caster's rays after checking that the twin gives exactly the same labels and depths."""
    fast = cast_rays(labels, origins, directions, geometry)
    slow = cast_rays_reference(labels, origins, directions, geometry)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    return fast


def scene_poses(shared_data: Path, scene: str = "scene-0103", channel: str | None = None):
    """(ego poses (N, 4, 4), LiDAR mounts (N, 4, 4)) of a real mini-val scene; LIDAR_TOP poses unless ``channel``."""
    keyframes = json.loads((shared_data / "nuscenes_sample/mini_val_poses/poses.json").read_text())["scenes"][scene][
        "keyframes"]
    poses = [k["ego2global"] if channel is None else k["cameras"][channel]["ego2global"] for k in keyframes]
    return np.array(poses), np.array([k["lidar2ego"] for k in keyframes])


@pytest.fixture(scope="module")
def real_gt(shared_data: Path) -> np.ndarray:
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as npz:
        return npz["semantics"]


@pytest.fixture(scope="module")
def real_origins(shared_data: Path) -> np.ndarray:
    """The 8 origins of keyframe 20 of scene-0103 (LIDAR_TOP poses, as SparseOcc takes them)."""
    return scene_ray_origins(*scene_poses(shared_data), 20)


def test_query_directions_follow_the_lidar_pattern() -> None:
    directions = lidar_ray_directions()
    assert directions.shape == (39 * 360, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-12)
    elevations = np.arcsin(directions[::360, 2])
    assert elevations[0] == pytest.approx(-math.pi / 4)
    assert elevations[9] == pytest.approx(-(math.pi / 2 - math.atan(10)))
    assert elevations[-2] < 0.21 <= elevations[-1]
    np.testing.assert_allclose(np.diff(elevations[9:]), elevations[9] - elevations[8], atol=1e-12)
    yaw = np.degrees(np.arctan2(directions[:360, 1], directions[:360, 0])) % 360
    np.testing.assert_allclose(yaw, np.arange(360.0), atol=1e-9)


def test_a_wall_at_a_known_distance() -> None:
    labels = np.full(HALF_METRE.size, FREE_INDEX, np.uint8)
    labels[120, :, :] = MANMADE  # x from 10.0 to 10.5 m
    origin = [[0.25, 0.25, 1.25]]  # a voxel centre
    directions = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [3, 4, 0]]
    hit, depth = both_casters(labels, origin, directions)
    assert hit.tolist() == [MANMADE, FREE_INDEX, FREE_INDEX, MANMADE]
    # leaves the wall voxel at x = 10.5 m; leaves the grid at x = -50 or y = 50 m; the oblique ray enters the wall
    # at x = 10 m (t = 9.75 / 0.6, y = 13.25 m) and leaves that voxel through its side y = 13.5 m, 0.25 / 0.8 later
    assert depth == pytest.approx([10.25, 50.25, 49.75, 9.75 / 0.6 + 0.25 / 0.8], abs=1e-12)


def test_an_origin_outside_the_grid_is_marched_in() -> None:
    labels = np.full(HALF_METRE.size, FREE_INDEX, np.uint8)
    labels[100, 100, 0] = CAR
    hit, depth = both_casters(labels, [[0.25, 0.25, 9.25], [0.25, 0.25, -3.0]], [[0, 0, -1], [0, 0, 1], [1, 0, 0]])
    assert hit.tolist() == [CAR, FREE_INDEX, FREE_INDEX, FREE_INDEX, CAR, FREE_INDEX]
    # from above: enters at z = 7, leaves the car voxel at z = -1 (10.25 m); away from the grid: never enters (0);
    # from below: leaves the car voxel at z = -0.5 (2.5 m); along x below the grid: never enters
    assert depth.tolist() == [10.25, 0.0, 0.0, 0.0, 2.5, 0.0]


BOX_ORIGINS = [[0.0, y, z] for y in (-4.25, -1.75, 0.25, 3.75) for z in (0.25, 1.25, 2.25)]
"""Twelve origins at voxel centres in y and z, each looking along +x at the box."""


def box_scene() -> tuple[np.ndarray, np.ndarray]:
    """A car box 10-12 m ahead (y -5..5 m, z 0..3 m) and the same box 1.5 m further."""
    gt = np.full(HALF_METRE.size, FREE_INDEX, np.uint8)
    gt[120:124, 90:110, 2:8] = CAR
    pred = np.full_like(gt, FREE_INDEX)
    pred[123:127, 90:110, 2:8] = CAR  # shifted by 3 voxels = 1.5 m
    return gt, pred


def test_a_box_shifted_by_1_5_m_is_a_hit_at_2_m_and_a_miss_at_1_m() -> None:
    gt, pred = box_scene()
    gt_rays, pred_rays = both_casters(gt, BOX_ORIGINS, [[1, 0, 0]]), both_casters(pred, BOX_ORIGINS, [[1, 0, 0]])
    assert (gt_rays[0] == CAR).all() and (pred_rays[0] == CAR).all()
    assert gt_rays[1].tolist() == [10.5] * 12 and pred_rays[1].tolist() == [12.0] * 12  # first car voxel's far face
    metric = RayIoU()
    metric.update_rays(*pred_rays, *gt_rays)
    assert metric.per_threshold().tolist() == [0.0, 1.0, 1.0]
    assert metric.rayiou() == pytest.approx(2 / 3)
    assert metric.true_positives[:, CAR].tolist() == [0, 12, 12]
    assert metric.gt_counts[CAR] == metric.pred_counts[CAR] == 12
    assert np.isnan(metric.iou()[:, TRUCK]).all()  # absent from both: out of the mean


def test_wrong_class_and_empty_prediction_score_zero() -> None:
    gt, _ = box_scene()
    wrong = np.where(gt == CAR, TRUCK, gt).astype(np.uint8)
    metric = RayIoU()
    metric.update(wrong, gt, BOX_ORIGINS, [[1, 0, 0]], HALF_METRE)
    assert metric.iou()[:, CAR].tolist() == [0.0] * 3 and metric.iou()[:, TRUCK].tolist() == [0.0] * 3
    assert metric.rayiou() == 0.0 and metric.pred_counts[TRUCK] == 12
    empty = RayIoU()
    empty.update(np.full_like(gt, FREE_INDEX), gt, BOX_ORIGINS, [[1, 0, 0]], HALF_METRE)
    assert empty.rayiou() == 0.0 and empty.pred_counts[FREE_INDEX] == 12 and empty.num_rays == 12
    assert empty.to_dict()["per_class"][CAR]["iou_percent_per_threshold"] == [0.0, 0.0, 0.0]


def test_rays_whose_ground_truth_hits_nothing_are_dropped() -> None:
    gt, _ = box_scene()
    metric = RayIoU()
    metric.update(gt, gt, [[0.0, 0.0, 1.0]], [[-1, 0, 0], [0, 1, 0], [1, 0, 0]], HALF_METRE)
    assert metric.num_rays == 1 and metric.gt_counts.sum() == 1 and metric.rayiou() == 1.0


@pytest.mark.parametrize("density", [0.002, 0.05, 0.4])
def test_fast_caster_equals_its_twin_on_random_grids(density: float) -> None:
    rng = np.random.default_rng(int(density * 1000))
    geometry = GridGeometry(origin=(-4.0, -6.0, -1.0), voxel_size=0.4, size=(20, 30, 8))
    labels = np.where(rng.random(geometry.size) < density, rng.integers(0, 17, geometry.size), FREE_INDEX)
    origins = np.concatenate([rng.uniform((-4, -6, -1), (4, 6, 2.2), (5, 3)),  # inside
                              [[0.0, 0.0, 0.2], [-4.0, -6.0, -1.0]],  # on voxel corners
                              rng.uniform((-6, -8, -3), (6, 8, 4), (3, 3))])  # some outside
    directions = np.concatenate([rng.normal(size=(60, 3)), np.eye(3), -np.eye(3), [[1, 1, 0], [1, -1, 1], [0, 1, 1]]])
    hit, depth = both_casters(labels.astype(np.uint8), origins, directions, geometry)
    assert (hit != FREE_INDEX).any() and (depth >= 0).all()


def test_first_hit_agrees_with_dense_sampling_along_the_rays() -> None:
    """Independent of the traversal: points every 1/1000 voxel along each ray, the first one in an occupied voxel."""
    rng = np.random.default_rng(7)
    geometry = GridGeometry(origin=(-4.0, -4.0, -1.0), voxel_size=0.4, size=(20, 20, 8))
    labels = np.where(rng.random(geometry.size) < 0.03, rng.integers(0, 17, geometry.size), FREE_INDEX).astype(np.uint8)
    origins = rng.uniform((-3, -3, -0.5), (3, 3, 2.0), (4, 3))
    directions = rng.normal(size=(50, 3))
    hit, depth = cast_rays(labels, origins, directions, geometry)
    units = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    t = np.arange(0, 13.0, 0.0004)  # metres, longer than any chord of the grid
    for m, (origin, unit) in enumerate((o, u) for o in origins for u in units):
        index = np.floor((origin + t[:, None] * unit - geometry.origin) / geometry.voxel_size).astype(int)
        inside = ((index >= 0) & (index < geometry.size)).all(1)
        occupied = np.flatnonzero(inside & (labels[tuple(np.clip(index, 0, np.array(geometry.size) - 1).T)]
                                            != FREE_INDEX))
        if not len(occupied):
            assert hit[m] == FREE_INDEX and depth[m] == pytest.approx(t[np.flatnonzero(inside)[-1]], abs=0.001)
            continue
        first = index[occupied[0]]
        assert hit[m] == labels[tuple(first)]
        leaves = occupied[0] + np.flatnonzero((index[occupied[0]:] != first).any(1))[0]  # first sample past it
        assert depth[m] == pytest.approx(t[leaves], abs=0.001)


def test_fast_caster_equals_its_twin_on_the_real_grid(real_gt: np.ndarray, real_origins: np.ndarray) -> None:
    directions = lidar_ray_directions()[::41]
    shifted = np.full_like(real_gt, FREE_INDEX)
    shifted[:, 1:] = real_gt[:, :-1]  # 0.4 m along +y
    gt_rays = both_casters(real_gt, real_origins, directions, GridGeometry())
    assert 0.3 < (gt_rays[0] != FREE_INDEX).mean() < 1.0
    fast, twin = RayIoU(), RayIoU()
    fast.update_rays(*both_casters(shifted, real_origins, directions, GridGeometry()), *gt_rays)
    twin_pred, twin_gt = (cast_rays_reference(grid, real_origins, directions) for grid in (shifted, real_gt))
    twin.update_rays(*twin_pred, *twin_gt)
    assert fast == twin and fast.per_threshold().tolist() == twin.per_threshold().tolist()
    assert fast.rayiou() == twin.rayiou() and 0.3 < fast.rayiou() < 1.0


def test_real_sample_against_itself_scores_100(real_gt: np.ndarray, real_origins: np.ndarray) -> None:
    metric = RayIoU()
    metric.update(real_gt, real_gt, real_origins)
    assert metric.rayiou() == 1.0 and metric.per_threshold().tolist() == [1.0, 1.0, 1.0]
    assert metric.num_rays == 78_771  # rays of the 8 x 14,040 whose ground truth hits something
    present = [c for c in range(17) if metric.gt_counts[c]]
    assert present == [0, 1, 3, 4, 6, 11, 13, 14, 15, 16]


def test_real_sample_shifted_by_one_voxel(real_gt: np.ndarray, real_origins: np.ndarray) -> None:
    shifted = np.full_like(real_gt, FREE_INDEX)
    shifted[1:] = real_gt[:-1]  # 0.4 m along +x
    metric = RayIoU()
    metric.update(shifted, real_gt, real_origins)
    # Stated values: computed once with cast_rays_reference over the same 8 x 14,040 rays (23 s on this CPU).
    assert metric.rayiou() == pytest.approx(0.7209262123955149, abs=1e-15)
    np.testing.assert_allclose(metric.per_threshold(), [0.6937590472362203, 0.7258088971497761, 0.7432106928005481],
                               atol=1e-15)


def test_origins_follow_the_protocol_on_real_poses(shared_data: Path) -> None:
    poses, mounts = scene_poses(shared_data)
    for reference in (0, 20, len(poses) - 1):
        origins = scene_ray_origins(poses, mounts, reference)
        # independent: every keyframe's LiDAR position in the reference ego frame, one at a time
        naive = []
        for pose, mount in zip(poses, mounts):
            point = np.linalg.solve(poses[reference], pose @ mount @ [0, 0, 0, 1])[:3]
            if abs(point[0]) < 39 and abs(point[1]) < 39:
                naive.append(point)
        pick = np.round(np.linspace(0, len(naive) - 1, 8)).astype(int) if len(naive) > 8 else range(len(naive))
        np.testing.assert_allclose(origins, np.array(naive)[pick], atol=1e-9)
        assert len(origins) == min(8, len(naive)) and (np.abs(origins[:, :2]) < 39).all()
        assert any((row == mounts[reference][:3, 3]).all() for row in origins) or len(naive) > 8


def test_accumulators_merge_like_one() -> None:
    gt, pred = box_scene()
    directions = [[1, 0, 0], [1, 0.1, 0], [1, -0.2, 0.05]]
    first, second, both = RayIoU(), RayIoU(), RayIoU()
    for metric in (first, both):
        metric.update(pred, gt, BOX_ORIGINS, directions, HALF_METRE)
    for metric in (second, both):
        metric.update(gt, gt, BOX_ORIGINS[:5], directions, HALF_METRE)
    assert first + second == both and first.merge(second) == both and both.num_samples == 2
    with pytest.raises(ValueError, match="different classes or thresholds"):
        both.merge(RayIoU(thresholds_m=(1.0,)))


def test_bad_inputs_are_named() -> None:
    labels = np.full(HALF_METRE.size, FREE_INDEX, np.uint8)
    with pytest.raises(ValueError, match="origins: expected finite shape"):
        cast_rays(labels, [0.0, 0.0, 1.0], [[1, 0, 0]], HALF_METRE)
    with pytest.raises(ValueError, match="directions: zero vector"):
        cast_rays(labels, [[0.0, 0.0, 1.0]], [[0, 0, 0]], HALF_METRE)
    with pytest.raises(ValueError, match="labels shape"):
        cast_rays(labels[:, :, :8], [[0.0, 0.0, 1.0]], [[1, 0, 0]], HALF_METRE)
    with pytest.raises(ValueError, match="reference 3 outside"):
        scene_ray_origins(np.eye(4)[None], np.eye(4)[None], 3)
