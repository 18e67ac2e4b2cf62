"""Scoring over scenes: every sample predicted in time order, mIoU (camera mask) and RayIoU accumulated, shared out
over torchrun ranks and reduced, and the result written as JSON and a chart.

Ground truth is the Occ3D tree GTROOT/<scene>/<sample token>/labels.npz (semantics, mask_camera, mask_lidar).
Protocols: gsdocc_ros/pipeline/metrics.py (mIoU) and gsdocc_ros/pipeline/ray_metrics.py (RayIoU).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gsdocc_ros.errors import ToolError, require_folder
from gsdocc_ros.io.grid_files import read_grid_file, read_grid_pose
from gsdocc_ros.io.output import atomic_output
from gsdocc_ros.pipeline.metrics import OccupancyConfusion
from gsdocc_ros.pipeline.ray_metrics import RayIoU, lidar_ray_directions, scene_ray_origins

RESULT_JSON = "miou.json"
RESULT_PNG = "miou_per_class.png"


SceneTokens = tuple[str, Sequence[str]]
"""A scene name and its sample tokens in time order."""


Predictor = Callable[[str, str, bool], "np.ndarray | None"]
"""(scene, sample token, start of scene) -> uint8 (X, Y, Z) labels, or None when there is no prediction."""


GtLoader = Callable[[str, str], "tuple[np.ndarray, np.ndarray] | None"]
"""(scene, sample token) -> (semantics uint8 (X, Y, Z), mask_camera bool (X, Y, Z)), or None without ground truth."""


ScenePoses = Callable[[str], "tuple[list[str], np.ndarray, np.ndarray]"]
"""scene -> (its sample tokens in time order, ego -> fixed poses (N, 4, 4), LiDAR -> ego mounts (N, 4, 4))."""


@dataclass
class RayScoring:
    """How RayIoU is scored: where each scene's keyframe poses come from, the query directions, the device."""

    scene_poses: ScenePoses
    directions: np.ndarray = field(default_factory=lidar_ray_directions)
    """float64 (R, 3) query directions (SparseOcc's 14,040; tests pass fewer)."""
    device: str = "cpu"
    _cache: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def origins(self, scene: str, token: str) -> np.ndarray:
        """float64 (T, 3): the query-ray origins of sample ``token`` in its ego frame."""
        if scene not in self._cache:
            self._cache = {scene: self.scene_poses(scene)}  # scenes are evaluated one after another
        tokens, poses, mounts = self._cache[scene]
        if token not in tokens:
            raise ToolError(f"sample {token} of {scene}: no ego pose for RayIoU origins")
        return scene_ray_origins(poses, mounts, tokens.index(token))


@dataclass
class EvalOutcome:
    """The accumulated confusion matrix and which samples were scored or had no prediction."""

    confusion: OccupancyConfusion = field(default_factory=OccupancyConfusion)
    scored: list[str] = field(default_factory=list)
    """Sample tokens folded into the matrix, in scene order."""
    missing: list[str] = field(default_factory=list)
    """Sample tokens with ground truth but no prediction."""
    no_gt: list[str] = field(default_factory=list)
    """Sample tokens predicted (the temporal cache needs every keyframe) but without ground truth."""
    scenes: list[str] = field(default_factory=list)
    """Scenes this process evaluated (all scenes once reduced)."""
    rays: RayIoU | None = None
    """RayIoU counts, when RayIoU is scored."""


def shard_scenes(scenes: Sequence[SceneTokens], rank: int, world_size: int) -> list[SceneTokens]:
    """The scenes rank ``rank`` of ``world_size`` evaluates: whole scenes (the temporal cache needs them), round-robin."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return list(scenes[rank::world_size])


def evaluate_scenes(scenes: Sequence[SceneTokens], predict: Predictor, load_gt: GtLoader,
                    progress: bool = True, rays: RayScoring | None = None) -> EvalOutcome:
    """Predict every sample of every scene in order (start_of_scene on each scene's first) and accumulate the score.

    Every sample is predicted, even one without ground truth, so that a temporal predictor sees the whole scene.
    With ``rays``, RayIoU is accumulated beside the confusion matrix.
    """
    outcome = EvalOutcome(scenes=[scene for scene, _ in scenes], rays=None if rays is None else RayIoU())
    total = sum(len(tokens) for _, tokens in scenes)
    with tqdm(total=total, desc="eval", unit="sample", disable=not progress) as bar:
        for scene, tokens in scenes:
            for index, token in enumerate(tokens):
                labels = predict(scene, token, index == 0)
                bar.update()
                gt = load_gt(scene, token)
                if gt is None:
                    outcome.no_gt.append(token)
                    continue
                if labels is None:
                    outcome.missing.append(token)
                    continue
                semantics, mask = gt
                try:
                    outcome.confusion.update(labels, semantics, mask)
                    if rays is not None:
                        outcome.rays.update(labels, semantics, rays.origins(scene, token), rays.directions,
                                            device=rays.device)
                except ValueError as error:
                    raise ToolError(f"sample {token} of {scene}: {error}") from None
                outcome.scored.append(token)
    return outcome


def reduce_outcome(outcome: EvalOutcome, all_scenes: Sequence[SceneTokens], device: str = "cpu") -> EvalOutcome:
    """Sum the confusion matrices (and ray counts) of all ranks and gather their token lists, in global scene order.

    Without an initialised process group this returns ``outcome`` unchanged.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return outcome
    matrix = torch.tensor(outcome.confusion.matrix, device=device)  # int64 [18,18], a copy
    dist.all_reduce(matrix, op=dist.ReduceOp.SUM)
    if outcome.rays is not None:
        counts = outcome.rays
        ray_counts = torch.tensor(np.concatenate([counts.gt_counts, counts.pred_counts, counts.true_positives.ravel(),
                                                  [counts.num_rays]]), device=device)  # int64, one reduction
        dist.all_reduce(ray_counts, op=dist.ReduceOp.SUM)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (outcome.scored, outcome.missing, outcome.no_gt))
    order = {token: i for i, token in enumerate(t for _, tokens in all_scenes for t in tokens)}

    def gathered(which: int) -> list[str]:
        return sorted((t for part in parts for t in part[which]), key=order.__getitem__)

    reduced = EvalOutcome(scored=gathered(0), missing=gathered(1), no_gt=gathered(2),
                          scenes=[scene for scene, _ in all_scenes])
    reduced.confusion.matrix[...] = matrix.cpu().numpy()
    reduced.confusion.num_samples = len(reduced.scored)
    if outcome.rays is not None:
        rays = RayIoU(outcome.rays.thresholds_m, outcome.rays.class_names, outcome.rays.free_index)
        classes, values = len(rays.class_names), ray_counts.cpu().numpy()
        rays.gt_counts[...], rays.pred_counts[...] = values[:classes], values[classes:2 * classes]
        rays.true_positives[...] = values[2 * classes:-1].reshape(len(rays.thresholds_m), classes)
        rays.num_rays, rays.num_samples = int(values[-1]), len(reduced.scored)
        reduced.rays = rays
    return reduced


def evaluate_distributed(scenes: Sequence[SceneTokens], predict: Predictor, load_gt: GtLoader, rank: int = 0,
                         world_size: int = 1, device: str = "cpu", progress: bool = True,
                         rays: RayScoring | None = None) -> EvalOutcome:
    """This rank's share of ``scenes`` evaluated, then reduced over all ranks (identical to one rank doing all)."""
    mine = shard_scenes(scenes, rank, world_size)
    return reduce_outcome(evaluate_scenes(mine, predict, load_gt, progress=progress and rank == 0, rays=rays),
                          scenes, device)


def init_distributed(device: str) -> tuple[int, int, str]:
    """(rank, world size, device of this rank); joins the torchrun process group when RANK/WORLD_SIZE are set."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, device
    import torch
    import torch.distributed as dist

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return rank, world_size, device


def gt_path(gt_root: Path, scene: str, token: str) -> Path:
    """Occ3D layout: GTROOT/<scene>/<token>/labels.npz."""
    return gt_root / scene / token / "labels.npz"


def gt_loader(gt_root: Path) -> GtLoader:
    """A GtLoader reading the Occ3D tree under ``gt_root`` (semantics and mask_camera, checked)."""
    def load(scene: str, token: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = gt_path(gt_root, scene, token)
        if not path.is_file():
            return None
        grid = read_grid_file(path, need_masks=("mask_camera",))
        return grid.labels, grid.masks["mask_camera"]
    return load


def scan_gt_tree(gt_root: Path) -> list[SceneTokens]:
    """Every (scene, tokens) with a labels.npz under ``gt_root``, sorted by scene then token."""
    require_folder(gt_root, "ground-truth")
    scenes: dict[str, list[str]] = {}
    for path in sorted(gt_root.glob("*/*/labels.npz")):
        scenes.setdefault(path.parent.parent.name, []).append(path.parent.name)
    if not scenes:
        raise ToolError(f"{gt_root}: no <scene>/<token>/labels.npz files found")
    return list(scenes.items())


def file_scene_poses(pred_dir: Path, scene_tokens: dict[str, list[str]]) -> ScenePoses:
    """Scene poses from the prediction files (``ego_pose``, ``lidar_to_ego``, ordered by ``stamp_ns``).

    The scene's keyframes are those of its ground-truth samples that have a prediction file.
    """
    def poses(scene: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        found = []
        for token in scene_tokens[scene]:
            path = pred_dir / f"{token}.npz"
            if path.is_file():
                pose = read_grid_pose(path)
                if pose is None:
                    raise ToolError(f"{path}: no stamp_ns / ego_pose / lidar_to_ego for the RayIoU origins (record "
                                    "with --bag from a bag with /tf, or give --dataroot for the nuScenes tables)")
                found.append((pose.stamp_ns, token, pose))
        found.sort(key=lambda item: item[0])
        return ([token for _, token, _ in found], np.array([p.ego_pose for _, _, p in found]),
                np.array([p.lidar_to_ego for _, _, p in found]))
    return poses


def result_dict(outcome: EvalOutcome, **provenance: Any) -> dict[str, Any]:
    """The machine-readable result: protocol, the confusion summary, RayIoU, tokens scored and missing, provenance."""
    rays = {} if outcome.rays is None else {"rayiou": {
        "metric": "SparseOcc RayIoU: rays from up to 8 keyframe LiDAR positions x 14,040 directions, first occupied "
                  "voxel, rays whose ground truth hits nothing dropped, TP = same class and depth error < t, "
                  "IoU = TP/(GT+Pred-TP) per class 0-16, averaged over classes and t = 1, 2, 4 m",
        **outcome.rays.to_dict()}}
    return {
        "metric": "Occ3D-nuScenes mIoU: voxels inside mask_camera, one confusion matrix over all samples, "
                  "IoU = TP/(TP+FP+FN), mIoU = nanmean over classes 0-16 (free excluded)",
        **outcome.confusion.to_dict(),
        **rays,
        "scenes": outcome.scenes,
        "tokens_scored": outcome.scored,
        "tokens_missing": outcome.missing,
        "tokens_without_gt": outcome.no_gt,
        **provenance,
    }


def write_results(out: Path, result: dict[str, Any], outcome: EvalOutcome, title: str) -> None:
    """OUT/miou.json and OUT/miou_per_class.png, each written to a temporary name and renamed."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / RESULT_JSON) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_output(out / RESULT_PNG) as tmp:
        from gsdocc_ros.viz.charts import plot_per_class  # matplotlib only when writing

        plot_per_class(outcome.confusion, title, outcome.rays).savefig(tmp, format="png")


def score_files(pred_dir: Path, gt_root: Path, rays: Callable[[dict[str, list[str]]], RayScoring] | None = None
                ) -> tuple[EvalOutcome, dict[str, Any]]:
    """Prediction files PRED/<sample token>.npz scored against the Occ3D tree; (outcome, provenance).

    ``rays`` builds the RayScoring from {scene: sample tokens} when RayIoU is wanted. ToolError when the folders are
    missing or no prediction file is named after a sample of the tree.
    """
    require_folder(pred_dir, "prediction")
    scenes = scan_gt_tree(gt_root)
    available = {p.stem for p in pred_dir.glob("*.npz")}
    known = {t for _, tokens in scenes for t in tokens}
    if not available & known:
        raise ToolError(f"{pred_dir}: none of its {len(available)} .npz files is named after a sample token "
                        f"of {gt_root}")

    def predict(scene: str, token: str, start: bool) -> np.ndarray | None:
        return read_grid_file(pred_dir / f"{token}.npz").labels if token in available else None

    outcome = evaluate_scenes(scenes, predict, gt_loader(gt_root), rays=None if rays is None else rays(dict(scenes)))
    return outcome, {"pred_dir": str(pred_dir), "gt_root": str(gt_root),
                     "predictions_unmatched": sorted(available - known)}
