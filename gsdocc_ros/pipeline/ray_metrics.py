"""RayIoU (SparseOcc, ECCV 2024): semantic occupancy scored along LiDAR-like query rays, as an accumulator.

The metric of GSD-OCC's second published number (RayIoU 38.9; 33.0 / 39.7 / 44.1 at 1 / 2 / 4 m). The
definition is that of H. Liu et al., "Fully Sparse 3D Occupancy Prediction", ECCV 2024 (arXiv 2312.17118,
section on RayIoU), and every protocol choice below was checked against its public evaluation
(github.com/MCG-NJU/SparseOcc: ``loaders/ray_metrics.py``, ``loaders/ego_pose_dataset.py``, ``ray_metrics.py``,
the CUDA marcher ``lib/dvr/dvr.cu``), read for facts only; nothing here is taken from that code.

Protocol choices and where they come from:

* **Query directions** (``lidar_ray_directions``, ray_metrics.py): a fixed LiDAR-like pattern, the same for
  every origin and sample: elevations -(pi/2 - atan(k + 1)) for k = 0..9, then continued in equal steps (the
  last step of that series) until an elevation reaches 0.21 rad (the top of the nuScenes LiDAR's field of
  view), each at 360 azimuths 1 degree apart: 39 elevations, 14,040 directions.
* **Origins** (``scene_ray_origins``, ego_pose_dataset.py): the LiDAR positions of *all keyframes of the same
  scene* (past and future), expressed in the scored keyframe's ego frame; the scored keyframe's own origin is
  its LiDAR mounting point. Positions with |x| >= 39 m or |y| >= 39 m are dropped; of more than 8 left, 8 are
  kept at indices round(linspace(0, n - 1, 8)) in time order. Rays = every origin x every direction.
  The pose of a keyframe is SparseOcc's ``ego2global``: the ego pose of its LIDAR_TOP sample (the frame Occ3D's
  ground truth is in). Through ROS, a grid carries the ego pose at its own stamp (CAM_FRONT, key-ego
  convention), looked up in the bag's tf; 34-38 ms earlier than LIDAR_TOP, this moves far origins by up to
  0.96 m and changes the kept set in 4 of the 81 mini-val keyframes, so ``gsdocc eval`` takes the poses from
  the tables at either channel: LIDAR_TOP (official, the default) or CAM_FRONT (equal to the ROS path).
* **Occupancy and casting** (dvr.cu ``render_forward`` in "test" mode): a voxel is occupied when its label is
  not free (17); ``others`` (0) is occupied. Each ray is marched voxel by voxel (Amanatides-Woo traversal)
  from the voxel holding its origin; the first occupied voxel met gives the ray's label (that voxel's class)
  and its depth, the distance along the ray at which the ray *leaves* that voxel (as the reference marcher
  reports it). The ground truth and the prediction are cast with the same rays.
* **Unknown voxels and masks**: only ``semantics`` is used. Occ3D labels unobserved voxels free, so rays pass
  through them; neither ``mask_camera`` nor ``mask_lidar`` is applied (ray_metrics.py loads ``semantics`` only).
* **Rays that hit nothing**: get the free label (the reference reports the label of the last voxel inside the
  grid, free by construction) and the depth where they leave the grid. Rays whose *ground-truth* label is free
  are dropped (ray_metrics.py, "evaluate on non-free rays"); a kept ray whose prediction hits nothing counts
  as a false negative of its ground-truth class.
* **Counting** (ray_metrics.py ``calc_rayiou``): for each threshold t in (1, 2, 4) m and class c, a kept ray
  is a true positive when both labels are c and |depth_pred - depth_gt| < t (strict); GT_c and Pred_c count
  the kept rays labelled c. Counts are summed over all samples of the split (not averaged per sample) and
  IoU_c(t) = TP / (GT_c + Pred_c - TP).
* **Mean**: classes 0..16 (17 classes, ``others`` included, free excluded); a class with GT_c = Pred_c = 0 is
  NaN and left out. RayIoU@t = nanmean over classes; RayIoU = nanmean over classes and the three
  thresholds, which equals the mean of RayIoU@1/2/4 (a class is NaN at every threshold or at none).
* **Rounding details of ours**: the traversal runs in float64 voxel units and starts in floor(origin); the
  reference runs in float32 and truncates toward zero (identical for origins inside the grid). An origin
  outside the grid is marched in until the ray enters it (or is seen never to).

Fast and slow casters: ``cast_rays`` steps all rays together, one voxel per iteration (torch, any device);
``cast_rays_reference`` is the same traversal written for one ray at a time in plain Python, the obviously
correct twin. They do the same float64 operations in the same order, so on CPU they agree bit for bit.
Time to score one sample (8 origins x 14,040 directions, ground truth and prediction cast) on the 2-core CPU
this was built on, shared with other sessions: best 1.11 s, median 1.15 s at load average 2.3; the slow twin
takes 25 s. A 40-keyframe scene is thus scored in about 45 s;
``PYTHONPATH=. .venv/bin/python benchmarks/bm_ray_metrics.py --twin`` gives it (``benchmarks/README.md``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
from numpy.typing import ArrayLike

from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_GEOMETRY, GridGeometry
from gsdocc_ros.pipeline.metrics import _check_labels

RAY_THRESHOLDS_M: tuple[float, ...] = (1.0, 2.0, 4.0)
"""Depth-error thresholds (m) under which a ray of the right class is a true positive."""
ORIGIN_LIMIT_M = 39.0
"""A keyframe's LiDAR position is an origin only when |x| and |y| in the scored ego frame are below this."""
MAX_ORIGINS = 8
"""At most this many origins per sample, evenly spread over the scene's keyframes in time order."""
TOP_ELEVATION_RAD = 0.21
"""The query elevations are continued until one reaches this (top of the nuScenes LiDAR's field of view)."""


def lidar_ray_directions() -> np.ndarray:
    """The fixed query directions: float64 (R, 3) unit vectors, elevation-major, 1-degree azimuth steps (R = 14,040)."""
    elevations = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while elevations[-1] < TOP_ELEVATION_RAD:
        elevations.append(2 * elevations[-1] - elevations[-2])
    pitch = np.repeat(np.asarray(elevations), 360)
    yaw = np.tile(np.deg2rad(np.arange(360.0)), len(elevations))
    return np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=1)


def _check_poses(poses: ArrayLike, name: str) -> np.ndarray:
    """``poses`` as float64 (N, 4, 4) homogeneous transforms; ValueError naming ``name`` otherwise."""
    array = np.asarray(poses, dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (4, 4) or not len(array):
        raise ValueError(f"{name}: expected shape (N, 4, 4) with N >= 1, got {array.shape}")
    if not np.isfinite(array).all() or not np.allclose(array[:, 3], (0.0, 0.0, 0.0, 1.0)):
        raise ValueError(f"{name}: not finite homogeneous transforms (last row must be 0 0 0 1)")
    return array


def scene_ray_origins(ego_poses: ArrayLike, lidar_to_ego: ArrayLike, reference: int,
                      limit_m: float = ORIGIN_LIMIT_M, max_origins: int = MAX_ORIGINS) -> np.ndarray:
    """Query-ray origins of keyframe ``reference``: float64 (T, 3), 1 <= T <= max_origins, in its ego frame.

    ``ego_poses``: shape (N, 4, 4) giving each keyframe's ego -> fixed-frame pose, the scene's N keyframes in time
    order; ``lidar_to_ego``: shape (N, 4, 4) giving each keyframe's LiDAR -> ego mounting. The reference keyframe's
    origin is its mounting point exactly (no pose round trip), so it never moves by rounding.
    """
    poses = _check_poses(ego_poses, "ego_poses")
    mounts = _check_poses(lidar_to_ego, "lidar_to_ego")
    if mounts.shape != poses.shape:
        raise ValueError(f"lidar_to_ego shape {mounts.shape} differs from ego_poses shape {poses.shape}")
    if not 0 <= reference < len(poses):
        raise ValueError(f"reference {reference} outside [0, {len(poses)})")
    to_reference = np.linalg.inv(poses[reference]) @ poses  # (N, 4, 4) keyframe ego -> reference ego
    to_reference[reference] = np.eye(4)
    positions = (to_reference @ mounts[:, :, 3:])[:, :3, 0]  # (N, 3) LiDAR positions in the reference ego frame
    kept = positions[(np.abs(positions[:, 0]) < limit_m) & (np.abs(positions[:, 1]) < limit_m)]
    if len(kept) > max_origins:
        kept = kept[np.round(np.linspace(0, len(kept) - 1, max_origins)).astype(np.int64)]
    if not len(kept):
        raise ValueError(f"no LiDAR position within {limit_m} m of keyframe {reference} (its own mount is outside?)")
    return kept


def _ray_inputs(labels: ArrayLike, origins: ArrayLike, directions: ArrayLike, geometry: GridGeometry
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs of both casters: labels (X, Y, Z), ray starts (T*R, 3) in voxel units, unit directions (T*R, 3)."""
    grid = _check_labels(labels, "labels", len(CLASS_NAMES))
    if grid.shape != geometry.size:
        raise ValueError(f"labels shape {grid.shape} differs from the grid size {geometry.size}")
    origins = np.asarray(origins, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    for name, array in (("origins", origins), ("directions", directions)):
        if array.ndim != 2 or array.shape[1] != 3 or not np.isfinite(array).all():
            raise ValueError(f"{name}: expected finite shape (N, 3), got {array.shape}")
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("directions: zero vector")
    starts = (origins - np.asarray(geometry.origin)) / geometry.voxel_size  # (T, 3) in voxel units
    count = len(directions)
    return grid, np.repeat(starts, count, axis=0), np.tile(directions / norms, (len(origins), 1))


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """On CPU, run the block with one intra-op thread, restored afterwards.

    The march is some 25 small tensor operations per voxel step; spread over threads they only add
    synchronisation: one Occ3D grid took 17 s with 2 threads on the shared 2-core machine, 0.9 s with 1.
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cast_rays(labels: ArrayLike, origins: ArrayLike, directions: ArrayLike, geometry: GridGeometry = OCC3D_GEOMETRY,
              device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """First occupied voxel along every ray, all rays marched together: (labels int64 (T*R,), depth m float64 (T*R,)).

    ``labels``: shape (X, Y, Z) integer classes, free = 17 is empty; ``origins``: shape (T, 3) ray starts in the grid's
    (ego) frame, metres; ``directions``: shape (R, 3) nonzero vectors. Ray t * R + r starts at origin t along
    direction r. A ray that hits nothing gets label 17 and the depth where it leaves the grid (0 if it never enters).
    """
    grid, starts, units = _ray_inputs(labels, origins, directions, geometry)
    device = torch.device(device)
    with _one_cpu_thread(device):
        label, depth = _march(grid, starts, units, geometry, device)
    return label.cpu().numpy(), depth.cpu().numpy() * geometry.voxel_size


def _march(grid: np.ndarray, starts: np.ndarray, units: np.ndarray, geometry: GridGeometry, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The body of ``cast_rays`` on checked inputs: (labels int64 (M,), depth in voxel units float64 (M,))."""
    size = torch.tensor(geometry.size, device=device)
    occupied = torch.as_tensor(grid != FREE_INDEX, device=device).reshape(-1)
    flat_labels = torch.as_tensor(grid.astype(np.int64), device=device).reshape(-1)
    position = torch.as_tensor(starts, device=device)
    direction = torch.as_tensor(units, device=device)
    voxel = torch.floor(position).long()  # (M, 3)
    step = torch.where(direction >= 0, 1, -1)  # (M, 3)
    moving = direction != 0
    t_max = torch.where(moving, (voxel + (step > 0) - position) / direction, torch.inf)  # (M, 3) next crossing
    t_delta = torch.where(moving, step / direction, torch.inf)  # (M, 3) ray length per voxel
    count = len(starts)
    out_label = torch.full((count,), FREE_INDEX, dtype=torch.int64, device=device)
    out_depth = torch.zeros(count, dtype=torch.float64, device=device)
    ray = torch.arange(count, device=device)
    exit_t = torch.zeros(count, dtype=torch.float64, device=device)  # (M,) where the last voxel inside was left
    strides = torch.tensor([geometry.size[1] * geometry.size[2], geometry.size[2], 1], device=device)
    axes = torch.arange(3, device=device)
    while len(ray):
        tx, ty, tz = t_max.unbind(1)
        axis = torch.where(tx < ty, torch.where(tx < tz, 0, 2), torch.where(ty < tz, 1, 2))  # (M,) reference's ties
        inside = ((voxel >= 0) & (voxel < size)).all(1)
        exit_t = torch.where(inside, t_max.gather(1, axis[:, None])[:, 0], exit_t)
        index = (voxel.clamp(min=0) * strides).sum(1).clamp(max=len(occupied) - 1)
        hit = inside & occupied[index]
        away = (((voxel < 0) & (step < 0)) | ((voxel >= size) & (step > 0))).any(1)  # outside and never coming back
        done = hit | away
        if done.any():
            finished = ray[done]
            out_label[finished] = torch.where(hit[done], flat_labels[index[done]], FREE_INDEX)
            out_depth[finished] = exit_t[done]
            keep = (~done).nonzero()[:, 0]  # one nonzero for the seven gathers below
            ray, voxel, step, t_max, t_delta, axis, exit_t = (
                a.index_select(0, keep) for a in (ray, voxel, step, t_max, t_delta, axis, exit_t))
        chosen = axis[:, None] == axes  # (M, 3) the axis crossed next
        voxel = voxel + chosen * step
        t_max = torch.where(chosen, t_max + t_delta, t_max)
    return out_label, out_depth


def cast_rays_reference(labels: ArrayLike, origins: ArrayLike, directions: ArrayLike,
                        geometry: GridGeometry = OCC3D_GEOMETRY) -> tuple[np.ndarray, np.ndarray]:
    """The slow twin of ``cast_rays``: the same traversal, one ray and one voxel step at a time in plain Python."""
    grid, starts, units = _ray_inputs(labels, origins, directions, geometry)
    size = geometry.size
    out_label = np.full(len(starts), FREE_INDEX, dtype=np.int64)
    out_depth = np.zeros(len(starts))
    for m, (start, unit) in enumerate(zip(starts.tolist(), units.tolist())):
        voxel = [math.floor(p) for p in start]
        step = [1 if d >= 0 else -1 for d in unit]
        t_max = [(v + (s > 0) - p) / d if d != 0 else math.inf for v, s, p, d in zip(voxel, step, start, unit)]
        t_delta = [s / d if d != 0 else math.inf for s, d in zip(step, unit)]
        while True:
            tx, ty, tz = t_max
            axis = (0 if tx < tz else 2) if tx < ty else (1 if ty < tz else 2)
            if all(0 <= v < n for v, n in zip(voxel, size)):
                out_depth[m] = t_max[axis]
                if grid[voxel[0], voxel[1], voxel[2]] != FREE_INDEX:
                    out_label[m] = grid[voxel[0], voxel[1], voxel[2]]
                    break
            elif any((v < 0 and s < 0) or (v >= n and s > 0) for v, s, n in zip(voxel, step, size)):
                break
            voxel[axis] += step[axis]
            t_max[axis] += t_delta[axis]
    return out_label, out_depth * geometry.voxel_size


class RayIoU:
    """Ray counts accumulated over a split: per class the GT and predicted rays, per threshold and class the TPs.

    ``update`` casts one sample; ``update_rays`` adds already cast rays; ``merge`` / ``+`` add another accumulator.
    """

    def __init__(self, thresholds_m: tuple[float, ...] = RAY_THRESHOLDS_M, class_names: tuple[str, ...] = CLASS_NAMES,
                 free_index: int = FREE_INDEX) -> None:
        if not 0 <= free_index < len(class_names):
            raise ValueError(f"free_index {free_index} outside [0, {len(class_names) - 1}]")
        self.thresholds_m = tuple(float(t) for t in thresholds_m)
        self.class_names = class_names
        self.free_index = free_index
        self.gt_counts = np.zeros(len(class_names), dtype=np.int64)
        """Kept rays (ground truth not free) whose ground-truth label is each class."""
        self.pred_counts = np.zeros(len(class_names), dtype=np.int64)
        """Kept rays whose predicted label is each class (free: the prediction hit nothing)."""
        self.true_positives = np.zeros((len(self.thresholds_m), len(class_names)), dtype=np.int64)
        """(thresholds, classes): kept rays with both labels the class and depth error under the threshold."""
        self.num_samples = 0
        self.num_rays = 0
        """Rays kept (ground truth hit something), over all samples."""

    def update_rays(self, pred_labels: ArrayLike, pred_depth: ArrayLike, gt_labels: ArrayLike,
                    gt_depth: ArrayLike) -> None:
        """Add one sample's cast rays: each argument shape (M,) (labels integer, depths metres), ray m in all four."""
        classes = len(self.class_names)
        pred_labels = _check_labels(pred_labels, "pred_labels", classes).ravel()
        gt_labels = _check_labels(gt_labels, "gt_labels", classes).ravel()
        pred_depth, gt_depth = np.ravel(pred_depth), np.ravel(gt_depth)
        if not len(pred_labels) == len(gt_labels) == len(pred_depth) == len(gt_depth):
            raise ValueError(f"ray counts differ: pred {len(pred_labels)} labels / {len(pred_depth)} depths, "
                             f"gt {len(gt_labels)} labels / {len(gt_depth)} depths")
        kept = gt_labels != self.free_index  # (M,) rays whose ground truth hits something
        pred_labels, gt_labels = pred_labels[kept], gt_labels[kept]
        error = np.abs(np.asarray(pred_depth, dtype=np.float64)[kept] - np.asarray(gt_depth, dtype=np.float64)[kept])
        self.gt_counts += np.bincount(gt_labels, minlength=classes)
        self.pred_counts += np.bincount(pred_labels, minlength=classes)
        agree = pred_labels == gt_labels
        for k, threshold in enumerate(self.thresholds_m):
            self.true_positives[k] += np.bincount(gt_labels[agree & (error < threshold)], minlength=classes)
        self.num_samples += 1
        self.num_rays += int(kept.sum())

    def update(self, pred: ArrayLike, gt: ArrayLike, origins: ArrayLike, directions: ArrayLike | None = None,
               geometry: GridGeometry = OCC3D_GEOMETRY, device: str | torch.device = "cpu") -> None:
        """Cast and add one sample: ``pred``, ``gt`` shape (X, Y, Z) labels; ``origins`` shape (T, 3) metres, ego frame.

        ``directions`` shape (R, 3), default ``lidar_ray_directions()``.
        """
        directions = lidar_ray_directions() if directions is None else directions
        if np.shape(pred) != np.shape(gt):
            raise ValueError(f"pred shape {np.shape(pred)} differs from gt shape {np.shape(gt)}")
        gt_rays = cast_rays(gt, origins, directions, geometry, device)
        pred_rays = cast_rays(pred, origins, directions, geometry, device)
        self.update_rays(*pred_rays, *gt_rays)

    def _check_compatible(self, other: RayIoU) -> None:
        """TypeError / ValueError unless ``other`` counts the same classes and thresholds."""
        if not isinstance(other, RayIoU):
            raise TypeError(f"cannot merge a RayIoU with a {type(other).__name__}")
        if (other.thresholds_m, other.class_names, other.free_index) != (
                self.thresholds_m, self.class_names, self.free_index):
            raise ValueError("cannot merge ray counts over different classes or thresholds")

    def merge(self, other: RayIoU) -> RayIoU:
        """Add ``other``'s counts into this accumulator in place; returns self."""
        self._check_compatible(other)
        self.gt_counts += other.gt_counts
        self.pred_counts += other.pred_counts
        self.true_positives += other.true_positives
        self.num_samples += other.num_samples
        self.num_rays += other.num_rays
        return self

    def __add__(self, other: RayIoU) -> RayIoU:
        """A new accumulator with the counts of both."""
        self._check_compatible(other)
        return RayIoU(self.thresholds_m, self.class_names, self.free_index).merge(self).merge(other)

    def __eq__(self, other: object) -> bool:
        """Same classes and thresholds, identical counts."""
        return (isinstance(other, RayIoU) and (other.thresholds_m, other.class_names, other.free_index) == (
            self.thresholds_m, self.class_names, self.free_index) and np.array_equal(other.gt_counts, self.gt_counts)
            and np.array_equal(other.pred_counts, self.pred_counts)
            and np.array_equal(other.true_positives, self.true_positives))

    def scored_classes(self) -> np.ndarray:
        """Indices of the classes that enter the mean: every class except free."""
        return np.array([c for c in range(len(self.class_names)) if c != self.free_index])

    def iou(self) -> np.ndarray:
        """float64 (thresholds, classes): TP / (GT + Pred - TP), NaN where a class has no ray at all."""
        union = self.gt_counts + self.pred_counts - self.true_positives  # (K, C)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, self.true_positives / np.maximum(union, 1), np.nan)

    def per_threshold(self) -> np.ndarray:
        """float64 (thresholds,): RayIoU@t, the nanmean over the scored classes (NaN when nothing was scored)."""
        values = self.iou()[:, self.scored_classes()]
        return np.array([np.nan if np.isnan(row).all() else np.nanmean(row) for row in values])

    def rayiou(self) -> float:
        """RayIoU: the nanmean over scored classes and thresholds, in [0, 1]; NaN when nothing was scored."""
        values = self.iou()[:, self.scored_classes()]
        return float("nan") if np.isnan(values).all() else float(np.nanmean(values))

    def class_means(self) -> np.ndarray:
        """float64 (classes,): each class's IoU averaged over the thresholds (NaN where absent)."""
        return self.iou().mean(axis=0)  # a class is NaN at every threshold or at none

    def table(self) -> str:
        """Per-class RayIoU at each threshold (percent) and ray counts, with the means as the last lines."""
        iou = self.iou()
        width = max(len(name) for name in self.class_names)
        heads = "".join(f"  {f'@{t:g} m %':>8}" for t in self.thresholds_m)
        lines = [f"{'#':>2}  {'class':<{width}}{heads}  {'GT rays':>12}  {'pred rays':>12}"]
        for c in self.scored_classes():
            cells = "".join(f"  {'-' if np.isnan(v) else f'{100 * v:.2f}':>8}" for v in iou[:, c])
            lines.append(f"{c:>2}  {self.class_names[c]:<{width}}{cells}  {self.gt_counts[c]:>12,}  "
                         f"{self.pred_counts[c]:>12,}")
        at = " / ".join(f"{100 * v:.2f}" for v in self.per_threshold())
        lines.append(f"RayIoU {100 * self.rayiou():.2f} % (@{' / '.join(f'{t:g}' for t in self.thresholds_m)} m: "
                     f"{at}) over {self.num_rays:,} rays from {self.num_samples} samples")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready summary: RayIoU, RayIoU per threshold, per-class IoU per threshold (percent, None for NaN)."""
        def percent(value: float) -> float | None:
            return None if np.isnan(value) else 100 * float(value)

        iou, means = self.iou(), self.class_means()
        return {
            "rayiou_percent": percent(self.rayiou()),
            "thresholds_m": list(self.thresholds_m),
            "rayiou_per_threshold_percent": [percent(v) for v in self.per_threshold()],
            "num_samples": self.num_samples,
            "rays_scored": self.num_rays,
            "per_class": [
                {"index": c, "name": name, "iou_percent_per_threshold": [percent(v) for v in iou[:, c]],
                 "iou_percent_mean": percent(means[c]), "in_mean": c != self.free_index and not np.isnan(means[c]),
                 "gt_rays": int(self.gt_counts[c]), "pred_rays": int(self.pred_counts[c]),
                 "true_positives_per_threshold": self.true_positives[:, c].tolist()}
                for c, name in enumerate(self.class_names)
            ],
        }
