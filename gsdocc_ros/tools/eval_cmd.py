"""Score Occ3D-nuScenes occupancy (mIoU inside the camera mask, RayIoU), from prediction files or by running the model.

  gsdocc eval score --pred DIR --gt GTROOT [--metric miou rayiou] [--dataroot NUSC --version V]
                    [--ray-poses LIDAR_TOP|CAM_FRONT] [--device cpu|cuda] [--out DIR] [--allow-missing] [--force]
  gsdocc eval run --dataroot NUSC --version v1.0-mini --gt GTROOT --checkpoint CKPT [--split mini_val]
                  [--scenes scene-0103 ...] [--metric miou rayiou] [--ray-poses LIDAR_TOP|CAM_FRONT]
                  [--device cpu|cuda] [--out DIR] [--save-predictions] [--allow-missing] [--force]

Ground truth: GTROOT/<scene>/<sample token>/labels.npz (Occ3D: semantics, mask_camera, mask_lidar).
Predictions (score): DIR/<sample token>.npz holding `semantics` or `pred`, uint8 (200, 200, 16) in Occ3D
(x, y, z) order. Protocol: voxels inside mask_camera only, one 18x18 confusion matrix over the split,
IoU = TP / (TP + FP + FN), mIoU = nanmean over classes 0..16 (free excluded; a class absent from both
ground truth and prediction is left out of the mean).

RayIoU (--metric rayiou; `run` scores both by default): SparseOcc's ray metric, protocol in
gsdocc_ros/pipeline/ray_metrics.py: rays from up to 8 LiDAR positions of the scene's keyframes, cast through
ground truth and prediction to the first occupied voxel; IoU per class over rays at 1, 2 and 4 m of depth
error, averaged. The origins need every keyframe's ego pose: from the nuScenes tables when --dataroot is
given (`run` always has them), at the LIDAR_TOP sample (official, default) or at CAM_FRONT (--ray-poses);
otherwise from the prediction files, which carry `ego_pose` and `lidar_to_ego` when `gsdocc record --bag`
looked them up in the bag's tf at the grid's stamp (the CAM_FRONT stamp: equal to --ray-poses CAM_FRONT).

`run` reads nuScenes with nuscenes-devkit, feeds every keyframe of each scene in time order through the
model with its temporal cache (reset at each scene start; extrinsics to the CAM_FRONT ego pose; history
warp from the LIDAR_TOP keyframe poses), and scores it. Launched by torchrun (RANK and WORLD_SIZE set),
scenes are shared out over the ranks (gloo on CPU, nccl on CUDA) and the confusion matrices are summed;
rank 0 writes the results. Outputs: OUT/miou.json (mIoU, per-class IoU and counts, confusion matrix,
RayIoU at 1/2/4 m and per class under "rayiou", tokens scored and missing) and OUT/miou_per_class.png (one
bar chart per metric).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from gsdocc_ros.deploy.backends import BACKENDS
from gsdocc_ros.pipeline.grid import FREE_INDEX, OCC3D_COLORS
from gsdocc_ros.pipeline.metrics import OccupancyConfusion
from gsdocc_ros.pipeline.ray_metrics import RayIoU, lidar_ray_directions, scene_ray_origins
from gsdocc_ros.tools.cli import ToolError
from gsdocc_ros.tools.grid_files import atomic_output, read_grid_file, read_grid_pose, refuse_existing, write_grid_file

VERB = "eval"
RESULT_JSON = "miou.json"
RESULT_PNG = "miou_per_class.png"
PREDICTIONS_DIR = "predictions"
METRICS = ("miou", "rayiou")
RAY_POSE_CHANNELS = ("LIDAR_TOP", "CAM_FRONT")
"""Whose keyframe ego poses place the RayIoU origins: LIDAR_TOP (SparseOcc's) or CAM_FRONT (the grids' stamps)."""
DEFAULT_SPLIT = {"v1.0-mini": "mini_val", "v1.0-trainval": "val", "v1.0-test": "test"}
"""The split `run` scores when --split is not given, per nuScenes version."""

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
    if not gt_root.is_dir():
        raise ToolError(f"ground-truth folder {gt_root} does not exist")
    scenes: dict[str, list[str]] = {}
    for path in sorted(gt_root.glob("*/*/labels.npz")):
        scenes.setdefault(path.parent.parent.name, []).append(path.parent.name)
    if not scenes:
        raise ToolError(f"{gt_root}: no <scene>/<token>/labels.npz files found")
    return list(scenes.items())


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


def _bars(ax: Any, iou: np.ndarray, names: Sequence[str], mean: float, label: str, ylabel: str) -> None:
    """One bar per non-free class of ``iou`` (float (classes,), NaN = n/a) in Occ3D colours, ``mean`` dashed."""
    classes = [c for c in range(len(iou)) if c != FREE_INDEX]
    values = [0.0 if np.isnan(iou[c]) else 100 * iou[c] for c in classes]
    ax.bar(range(len(classes)), values, color=OCC3D_COLORS[classes] / 255.0, edgecolor="black", linewidth=0.6)
    for x, c in enumerate(classes):
        ax.text(x, values[x] + 1, "n/a" if np.isnan(iou[c]) else f"{values[x]:.1f}", ha="center", fontsize=8)
    if not np.isnan(mean):
        ax.axhline(100 * mean, color="grey", linestyle="--", linewidth=1, label=f"{label} {100 * mean:.2f}")
        ax.legend(loc="upper right")
    ax.set_xticks(range(len(classes)), [names[c] for c in classes], rotation=45, ha="right")
    ax.set_ylim(0, 118)  # room for the legend above a 100 % bar
    ax.set_ylabel(ylabel)


def plot_per_class(confusion: OccupancyConfusion, title: str, rays: RayIoU | None = None) -> Figure:
    """Bar chart of IoU (percent) per class 0..16 in Occ3D colours, mean dashed; below it RayIoU's when given."""
    fig = Figure(figsize=(11, 5 if rays is None else 10), dpi=100, layout="constrained")
    axes = fig.subplots(1 if rays is None else 2, 1, squeeze=False)[:, 0]
    _bars(axes[0], confusion.iou(), confusion.class_names, confusion.miou(), "mIoU", "IoU (%) inside mask_camera")
    if rays is not None:
        at = " / ".join(f"{100 * v:.1f}" for v in rays.per_threshold())
        _bars(axes[1], rays.class_means(), rays.class_names, rays.rayiou(),
              f"RayIoU (@{' / '.join(f'{t:g}' for t in rays.thresholds_m)} m: {at})", "RayIoU (%), mean of 1/2/4 m")
    axes[0].set_title(title)
    return fig


def write_results(out: Path, result: dict[str, Any], outcome: EvalOutcome, title: str) -> None:
    """OUT/miou.json and OUT/miou_per_class.png, each written to a temporary name and renamed."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / RESULT_JSON) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_output(out / RESULT_PNG) as tmp:
        plot_per_class(outcome.confusion, title, outcome.rays).savefig(tmp, format="png")


def _finish(outcome: EvalOutcome, args: argparse.Namespace, title: str, **provenance: Any) -> int:
    """Print the tables, write the outputs, and fail on missing predictions unless allowed."""
    print(outcome.confusion.table())
    if outcome.rays is not None:
        print(outcome.rays.table())
    write_results(args.out, result_dict(outcome, **provenance), outcome, title)
    if outcome.missing:
        listed = ", ".join(outcome.missing[:5]) + (" ..." if len(outcome.missing) > 5 else "")
        message = f"{len(outcome.missing)} of {len(outcome.missing) + len(outcome.scored)} samples had no prediction: {listed}"
        if not args.allow_missing:
            raise ToolError(f"{message} (results written to {args.out}; --allow-missing accepts this)")
        print(f"warning: {message}", file=sys.stderr)
    rayiou = "" if outcome.rays is None else f", RayIoU {100 * outcome.rays.rayiou():.2f}"
    print(f"wrote {args.out / RESULT_JSON} and {args.out / RESULT_PNG} "
          f"(mIoU {100 * outcome.confusion.miou():.2f}{rayiou} over {len(outcome.scored)} samples)")
    return 0


def _score(args: argparse.Namespace) -> int:
    """gsdocc eval score: prediction files against the Occ3D tree."""
    if not args.pred.is_dir():
        raise ToolError(f"prediction folder {args.pred} does not exist")
    scenes = scan_gt_tree(args.gt)
    refuse_existing([args.out / RESULT_JSON, args.out / RESULT_PNG], args.force)
    available = {p.stem for p in args.pred.glob("*.npz")}
    known = {t for _, tokens in scenes for t in tokens}
    if not available & known:
        raise ToolError(f"{args.pred}: none of its {len(available)} .npz files is named after a sample token "
                        f"of {args.gt}")

    rays, poses_from = None, None
    if "rayiou" in args.metric:
        if args.dataroot is not None:
            scene_poses, poses_from = nuscenes_scene_poses(load_tables(args), args.ray_poses), args.ray_poses
        else:
            scene_poses, poses_from = file_scene_poses(args.pred, dict(scenes)), "prediction files"
        rays = RayScoring(scene_poses, device=args.device)

    def predict(scene: str, token: str, start: bool) -> np.ndarray | None:
        return read_grid_file(args.pred / f"{token}.npz").labels if token in available else None

    outcome = evaluate_scenes(scenes, predict, gt_loader(args.gt), rays=rays)
    return _finish(outcome, args, f"{args.pred.name}: {len(outcome.scored)} samples", command="score",
                   pred_dir=str(args.pred), gt_root=str(args.gt), ray_poses=poses_from,
                   predictions_unmatched=sorted(available - known))


def check_tables(args: argparse.Namespace) -> None:
    """ToolError unless --dataroot holds the --version tables folder."""
    if not (args.dataroot / args.version).is_dir():
        raise ToolError(f"nuScenes tables {args.dataroot / args.version} do not exist (check --dataroot and --version)")


def load_tables(args: argparse.Namespace) -> Any:
    """The nuScenes tables of --dataroot / --version, loaded with nuscenes-devkit (ToolError when absent)."""
    check_tables(args)
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version=args.version, dataroot=str(args.dataroot), verbose=False)


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


def _record_pose(record: dict) -> np.ndarray:
    """float64 (4, 4) transform of a nuScenes ego_pose or calibrated_sensor record (translation, rotation wxyz)."""
    from gsdocc_ros.pipeline.geometry import make_transform, quaternion_wxyz_to_matrix

    return make_transform(quaternion_wxyz_to_matrix(record["rotation"]), record["translation"])


def nuscenes_scene_poses(nusc: Any, channel: str) -> ScenePoses:
    """Scene poses from the nuScenes tables: each keyframe's ego pose at its ``channel`` sample, LIDAR_TOP mounts."""
    def poses(scene: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        ((_, tokens),) = scene_samples(nusc, [scene])
        ego, mounts = [], []
        for token in tokens:
            data = nusc.get("sample", token)["data"]
            ego.append(_record_pose(nusc.get("ego_pose", nusc.get("sample_data", data[channel])["ego_pose_token"])))
            lidar = nusc.get("sample_data", data["LIDAR_TOP"])
            mounts.append(_record_pose(nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])))
        return list(tokens), np.array(ego), np.array(mounts)
    return poses


@dataclass
class KeyframeInputs:
    """What the runner needs for one nuScenes keyframe."""

    frames: list
    """CameraFrame per camera, CAMERA_NAMES order, extrinsics to the CAM_FRONT ego pose."""
    sample_ego2global: np.ndarray
    """float64 (4, 4) LIDAR_TOP keyframe ego pose: the pose the history warp uses (official)."""
    stamp_ns: int
    """CAM_FRONT stamp, nanoseconds."""
    key_ego2global: np.ndarray
    """float64 (4, 4) CAM_FRONT ego pose: the frame of the predicted grid, saved with it as ``ego_pose``."""
    lidar_to_ego: np.ndarray
    """float64 (4, 4) LIDAR_TOP mounting, saved with the grid for its RayIoU origins."""


def keyframe_inputs(nusc: Any, sample_token: str) -> KeyframeInputs:
    """Camera frames of one nuScenes sample in the key-ego convention (gsdocc_model.md section 1)."""
    from PIL import Image

    from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA, CameraFrame
    from gsdocc_ros.pipeline.geometry import camera_to_key_ego

    sample = nusc.get("sample", sample_token)
    cams = {name: nusc.get("sample_data", sample["data"][name]) for name in CAMERA_NAMES}
    key_pose = _record_pose(nusc.get("ego_pose", cams[KEY_CAMERA]["ego_pose_token"]))
    frames = []
    for name in CAMERA_NAMES:
        data = cams[name]
        sensor = nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
        path = Path(nusc.dataroot) / data["filename"]
        frames.append(CameraFrame(
            name=name,
            image=np.asarray(Image.open(path).convert("RGB")),
            intrinsics=np.asarray(sensor["camera_intrinsic"], dtype=np.float64),
            cam_to_ego=camera_to_key_ego(_record_pose(sensor),
                                         _record_pose(nusc.get("ego_pose", data["ego_pose_token"])), key_pose),
            stamp_ns=int(data["timestamp"]) * 1000,
        ))
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    return KeyframeInputs(frames, _record_pose(nusc.get("ego_pose", lidar["ego_pose_token"])),
                          int(cams[KEY_CAMERA]["timestamp"]) * 1000, key_pose,
                          _record_pose(nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])))


def scene_samples(nusc: Any, scene_names: Sequence[str]) -> list[SceneTokens]:
    """(scene, sample tokens in time order) for each named scene, walking sample.next from the first."""
    by_name = {scene["name"]: scene for scene in nusc.scene}
    unknown = [name for name in scene_names if name not in by_name]
    if unknown:
        raise ToolError(f"scenes not in {nusc.version}: {', '.join(unknown)}")
    out = []
    for name in scene_names:
        tokens, token = [], by_name[name]["first_sample_token"]
        while token:
            tokens.append(token)
            token = nusc.get("sample", token)["next"]
        out.append((name, tokens))
    return out


class ModelPredictor:
    """Predictor over nuScenes keyframes with an OccupancyRunner: cache reset at each scene start."""

    def __init__(self, nusc: Any, runner: Any, save_dir: Path | None = None) -> None:
        self.nusc, self.runner, self.save_dir = nusc, runner, save_dir
        self.unexpected_resets: list[str] = []
        """'token: reason' for each mid-scene cache reset the runner decided on its own."""

    def __call__(self, scene: str, token: str, start: bool) -> np.ndarray:
        """Run the model on one keyframe; the scene name is the runner's sequence id."""
        inputs = keyframe_inputs(self.nusc, token)
        if start:
            self.runner.reset(f"start of {scene}")
        result = self.runner.step(inputs.frames, inputs.sample_ego2global, inputs.stamp_ns, sequence_id=scene)
        if result is None:
            raise ToolError(f"sample {token} of {scene}: the runner skipped this keyframe (cadence); "
                            "every keyframe must be inferred for the official protocol")
        if result.start_of_sequence and not start:
            self.unexpected_resets.append(f"{token}: {result.reset_reason}")
        labels = result.grid.labels
        if self.save_dir is not None:
            write_grid_file(self.save_dir / f"{token}.npz", labels, stamp_ns=inputs.stamp_ns,
                            ego_pose=inputs.key_ego2global, lidar_to_ego=inputs.lidar_to_ego)
        return labels


def _run(args: argparse.Namespace) -> int:
    """gsdocc eval run: the model over a nuScenes split, scored against the Occ3D tree."""
    check_tables(args)
    if not args.gt.is_dir():
        raise ToolError(f"ground-truth folder {args.gt} does not exist")
    if not args.checkpoint.is_file():
        raise ToolError(f"checkpoint {args.checkpoint} does not exist")
    refuse_existing([args.out / RESULT_JSON, args.out / RESULT_PNG], args.force)
    from nuscenes.utils.splits import create_splits_scenes

    split = None if args.scenes else args.split or DEFAULT_SPLIT.get(args.version)
    splits = create_splits_scenes()
    if not args.scenes and split not in splits:
        raise ToolError(f"--split {split!r} unknown; choose from {', '.join(splits)} or list --scenes")
    rank, world_size, device = init_distributed(args.device)
    try:
        return _run_ranked(args, list(args.scenes or splits[split]), split, rank, world_size, device)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _run_ranked(args: argparse.Namespace, names: list[str], split: str | None, rank: int, world_size: int,
                device: str) -> int:
    """The body of `run` on one rank (every rank checks the same inputs, so all fail alike); rank 0 writes."""
    from nuscenes.nuscenes import NuScenes

    from gsdocc_ros.model.config import ModelConfig
    from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model

    nusc = NuScenes(version=args.version, dataroot=str(args.dataroot), verbose=rank == 0)
    scenes = scene_samples(nusc, names)
    no_gt = [t for scene, tokens in scenes for t in tokens if not gt_path(args.gt, scene, t).is_file()]
    if no_gt and not args.allow_missing:
        raise ToolError(f"{len(no_gt)} samples have no {args.gt}/<scene>/<token>/labels.npz, "
                        f"e.g. {no_gt[0]} (--allow-missing runs them unscored)")
    save_dir = args.out / PREDICTIONS_DIR if args.save_predictions else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    try:
        model, source = load_model(args.checkpoint, ModelConfig(), trust_pickle=args.trust_pickle)
        # Official protocol: every keyframe is a history step, though CAM_FRONT keyframe gaps range 0.4-0.6 s.
        runner = OccupancyRunner(model, RunnerConfig(device=device, precision=args.precision, backend=args.backend,
                                                     graph_dir=str(args.graph_dir or ""),
                                                     cadence_tolerance_s=0.2, confidence=False), source=source)
    except (ValueError, FileNotFoundError) as error:
        raise ToolError(str(error)) from None
    predictor = ModelPredictor(nusc, runner, save_dir)
    rays = RayScoring(nuscenes_scene_poses(nusc, args.ray_poses), device=device) if "rayiou" in args.metric else None
    outcome = evaluate_distributed(scenes, predictor, gt_loader(args.gt), rank, world_size, device, rays=rays)
    if rank != 0:
        return 0
    for reset in predictor.unexpected_resets:
        print(f"warning: cache reset inside a scene at {reset}", file=sys.stderr)
    if outcome.no_gt:
        print(f"warning: {len(outcome.no_gt)} samples without ground truth were run but not scored", file=sys.stderr)
    return _finish(outcome, args, f"{source}: {args.version} {split or 'scenes'} ({len(outcome.scored)} samples)",
                   command="run", dataroot=str(args.dataroot), version=args.version, split=split,
                   gt_root=str(args.gt), checkpoint=str(args.checkpoint), source=source, world_size=world_size,
                   ray_poses=args.ray_poses if rays is not None else None,
                   device=device, unexpected_resets=predictor.unexpected_resets)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc eval {score,run}``."""
    parser = subparsers.add_parser(VERB, help="Occ3D mIoU of prediction files or of the model on nuScenes",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="{score,run}")
    score = actions.add_parser("score", help="score <token>.npz prediction files against Occ3D ground truth")
    score.add_argument("--pred", type=Path, required=True, help="folder of <sample token>.npz predictions")
    score.add_argument("--dataroot", type=Path,
                       help="nuScenes root: RayIoU origins from its tables instead of the prediction files' poses")
    score.add_argument("--version", default="v1.0-trainval",
                       help="nuScenes version with --dataroot (default: %(default)s)")
    score.add_argument("--device", default="cpu", help="device of the RayIoU ray caster: cpu or cuda")
    model_run = actions.add_parser("run", help="run the model over a nuScenes split and score it")
    model_run.add_argument("--dataroot", type=Path, required=True, help="nuScenes root (holds samples/ and VERSION/)")
    model_run.add_argument("--version", default="v1.0-mini", help="nuScenes version folder (default: %(default)s)")
    model_run.add_argument("--checkpoint", type=Path, required=True, help="GSD-OCC checkpoint (official or own format)")
    model_run.add_argument("--trust-pickle", action="store_true", help="allow arbitrary unpickling of the checkpoint")
    model_run.add_argument("--split", help="nuScenes split name (default: mini_val for v1.0-mini, val for v1.0-trainval)")
    model_run.add_argument("--scenes", nargs="+", help="scene names to evaluate instead of the split")
    model_run.add_argument("--device", default="cpu", help="cpu or cuda (torchrun ranks use cuda:LOCAL_RANK)")
    model_run.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="inference precision")
    model_run.add_argument("--backend", default="torch", choices=BACKENDS,
                           help="runtime of the network (default torch; others run --graph-dir's exported graph)")
    model_run.add_argument("--graph-dir", type=Path, help="`gsdocc export` folder for --backend other than torch")
    model_run.add_argument("--save-predictions", action="store_true",
                     help=f"also write OUT/{PREDICTIONS_DIR}/<token>.npz (re-scorable with `gsdocc eval score`)")
    for sub, default in ((score, ["miou"]), (model_run, list(METRICS))):
        sub.add_argument("--metric", nargs="+", choices=METRICS, default=default,
                         help="metrics to report; mIoU is always scored (default: %(default)s)")
        sub.add_argument("--ray-poses", choices=RAY_POSE_CHANNELS, default=RAY_POSE_CHANNELS[0],
                         help="keyframe ego poses of the RayIoU origins from the nuScenes tables: LIDAR_TOP "
                              "(SparseOcc's) or CAM_FRONT (the grids' stamps, as through ROS) (default: %(default)s)")
        sub.add_argument("--gt", type=Path, required=True, help="Occ3D ground truth root: <scene>/<token>/labels.npz")
        sub.add_argument("--out", type=Path, default=Path("out/eval"), help="output folder (default: %(default)s)")
        sub.add_argument("--allow-missing", action="store_true",
                         help="report samples without prediction (score) or ground truth (run) instead of failing")
        sub.add_argument("--force", action="store_true", help=f"overwrite {RESULT_JSON} / {RESULT_PNG} in OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc eval score|run``; returns 0, or raises ToolError (exit 2) naming what is wrong."""
    return _score(args) if args.action == "score" else _run(args)
