"""Score Occ3D-nuScenes occupancy (mIoU inside the camera mask), from prediction files or by running the model.

  gsdocc eval score --pred DIR --gt GTROOT [--out DIR] [--allow-missing] [--force]
  gsdocc eval run --dataroot NUSC --version v1.0-mini --gt GTROOT --checkpoint CKPT [--split mini_val]
                  [--scenes scene-0103 ...] [--device cpu|cuda] [--out DIR] [--save-predictions]
                  [--allow-missing] [--force]

Ground truth: GTROOT/<scene>/<sample token>/labels.npz (Occ3D: semantics, mask_camera, mask_lidar).
Predictions (score): DIR/<sample token>.npz holding `semantics` or `pred`, uint8 (200, 200, 16) in Occ3D
(x, y, z) order. Protocol: voxels inside mask_camera only, one 18x18 confusion matrix over the split,
IoU = TP / (TP + FP + FN), mIoU = nanmean over classes 0..16 (free excluded; a class absent from both
ground truth and prediction is left out of the mean).

`run` reads nuScenes with nuscenes-devkit, feeds every keyframe of each scene in time order through the
model with its temporal cache (reset at each scene start; extrinsics to the CAM_FRONT ego pose; history
warp from the LIDAR_TOP keyframe poses), and scores it. Launched by torchrun (RANK and WORLD_SIZE set),
scenes are shared out over the ranks (gloo on CPU, nccl on CUDA) and the confusion matrices are summed;
rank 0 writes the results. Outputs: OUT/miou.json (mIoU, per-class IoU and counts, confusion matrix,
tokens scored and missing) and OUT/miou_per_class.png.
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

from gsdocc_ros.pipeline.grid import FREE_INDEX, OCC3D_COLORS
from gsdocc_ros.pipeline.metrics import OccupancyConfusion
from gsdocc_ros.tools.cli import ToolError
from gsdocc_ros.tools.grid_files import atomic_output, read_grid_file, refuse_existing, write_grid_file

VERB = "eval"
RESULT_JSON = "miou.json"
RESULT_PNG = "miou_per_class.png"
PREDICTIONS_DIR = "predictions"
DEFAULT_SPLIT = {"v1.0-mini": "mini_val", "v1.0-trainval": "val", "v1.0-test": "test"}
"""The split `run` scores when --split is not given, per nuScenes version."""

SceneTokens = tuple[str, Sequence[str]]
"""A scene name and its sample tokens in time order."""
Predictor = Callable[[str, str, bool], "np.ndarray | None"]
"""(scene, sample token, start of scene) -> uint8 (X, Y, Z) labels, or None when there is no prediction."""
GtLoader = Callable[[str, str], "tuple[np.ndarray, np.ndarray] | None"]
"""(scene, sample token) -> (semantics uint8 (X, Y, Z), mask_camera bool (X, Y, Z)), or None without ground truth."""


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


def shard_scenes(scenes: Sequence[SceneTokens], rank: int, world_size: int) -> list[SceneTokens]:
    """The scenes rank ``rank`` of ``world_size`` evaluates: whole scenes (the temporal cache needs them), round-robin."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return list(scenes[rank::world_size])


def evaluate_scenes(scenes: Sequence[SceneTokens], predict: Predictor, load_gt: GtLoader,
                    progress: bool = True) -> EvalOutcome:
    """Predict every sample of every scene in order (start_of_scene on each scene's first) and accumulate the score.

    Every sample is predicted, even one without ground truth, so that a temporal predictor sees the whole scene.
    """
    outcome = EvalOutcome(scenes=[scene for scene, _ in scenes])
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
                except ValueError as error:
                    raise ToolError(f"sample {token} of {scene}: {error}") from None
                outcome.scored.append(token)
    return outcome


def reduce_outcome(outcome: EvalOutcome, all_scenes: Sequence[SceneTokens], device: str = "cpu") -> EvalOutcome:
    """Sum the confusion matrices of all ranks (all_reduce) and gather their token lists, in global scene order.

    Without an initialised process group this returns ``outcome`` unchanged.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return outcome
    matrix = torch.tensor(outcome.confusion.matrix, device=device)  # int64 [18,18], a copy
    dist.all_reduce(matrix, op=dist.ReduceOp.SUM)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (outcome.scored, outcome.missing, outcome.no_gt))
    order = {token: i for i, token in enumerate(t for _, tokens in all_scenes for t in tokens)}

    def gathered(which: int) -> list[str]:
        return sorted((t for part in parts for t in part[which]), key=order.__getitem__)

    reduced = EvalOutcome(scored=gathered(0), missing=gathered(1), no_gt=gathered(2),
                          scenes=[scene for scene, _ in all_scenes])
    reduced.confusion.matrix[...] = matrix.cpu().numpy()
    reduced.confusion.num_samples = len(reduced.scored)
    return reduced


def evaluate_distributed(scenes: Sequence[SceneTokens], predict: Predictor, load_gt: GtLoader, rank: int = 0,
                         world_size: int = 1, device: str = "cpu", progress: bool = True) -> EvalOutcome:
    """This rank's share of ``scenes`` evaluated, then reduced over all ranks (identical to one rank doing all)."""
    mine = shard_scenes(scenes, rank, world_size)
    return reduce_outcome(evaluate_scenes(mine, predict, load_gt, progress=progress and rank == 0), scenes, device)


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
    """The machine-readable result: protocol, the confusion summary, tokens scored and missing, and provenance."""
    return {
        "metric": "Occ3D-nuScenes mIoU: voxels inside mask_camera, one confusion matrix over all samples, "
                  "IoU = TP/(TP+FP+FN), mIoU = nanmean over classes 0-16 (free excluded)",
        **outcome.confusion.to_dict(),
        "scenes": outcome.scenes,
        "tokens_scored": outcome.scored,
        "tokens_missing": outcome.missing,
        "tokens_without_gt": outcome.no_gt,
        **provenance,
    }


def plot_per_class(confusion: OccupancyConfusion, title: str) -> Figure:
    """Bar chart of IoU (percent) per class 0..16 in Occ3D colours, with the mIoU as a dashed line."""
    iou = confusion.iou()
    classes = [c for c in range(confusion.num_classes) if c != FREE_INDEX]
    values = [0.0 if np.isnan(iou[c]) else 100 * iou[c] for c in classes]
    fig = Figure(figsize=(11, 5), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.bar(range(len(classes)), values, color=OCC3D_COLORS[classes] / 255.0, edgecolor="black", linewidth=0.6)
    for x, c in enumerate(classes):
        ax.text(x, values[x] + 1, "n/a" if np.isnan(iou[c]) else f"{values[x]:.1f}", ha="center", fontsize=8)
    miou = confusion.miou()
    if not np.isnan(miou):
        ax.axhline(100 * miou, color="grey", linestyle="--", linewidth=1, label=f"mIoU {100 * miou:.2f}")
        ax.legend(loc="upper right")
    ax.set_xticks(range(len(classes)), [confusion.class_names[c] for c in classes], rotation=45, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("IoU (%) inside mask_camera")
    ax.set_title(title)
    return fig


def write_results(out: Path, result: dict[str, Any], confusion: OccupancyConfusion, title: str) -> None:
    """OUT/miou.json and OUT/miou_per_class.png, each written to a temporary name and renamed."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / RESULT_JSON) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_output(out / RESULT_PNG) as tmp:
        plot_per_class(confusion, title).savefig(tmp, format="png")


def _finish(outcome: EvalOutcome, args: argparse.Namespace, title: str, **provenance: Any) -> int:
    """Print the table, write the outputs, and fail on missing predictions unless allowed."""
    print(outcome.confusion.table())
    write_results(args.out, result_dict(outcome, **provenance), outcome.confusion, title)
    if outcome.missing:
        listed = ", ".join(outcome.missing[:5]) + (" ..." if len(outcome.missing) > 5 else "")
        message = f"{len(outcome.missing)} of {len(outcome.missing) + len(outcome.scored)} samples had no prediction: {listed}"
        if not args.allow_missing:
            raise ToolError(f"{message} (results written to {args.out}; --allow-missing accepts this)")
        print(f"warning: {message}", file=sys.stderr)
    print(f"wrote {args.out / RESULT_JSON} and {args.out / RESULT_PNG} "
          f"(mIoU {100 * outcome.confusion.miou():.2f} over {len(outcome.scored)} samples)")
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

    def predict(scene: str, token: str, start: bool) -> np.ndarray | None:
        return read_grid_file(args.pred / f"{token}.npz").labels if token in available else None

    outcome = evaluate_scenes(scenes, predict, gt_loader(args.gt))
    return _finish(outcome, args, f"{args.pred.name}: {len(outcome.scored)} samples", command="score",
                   pred_dir=str(args.pred), gt_root=str(args.gt),
                   predictions_unmatched=sorted(available - known))


@dataclass
class KeyframeInputs:
    """What the runner needs for one nuScenes keyframe."""

    frames: list
    """CameraFrame per camera, CAMERA_NAMES order, extrinsics to the CAM_FRONT ego pose."""
    sample_ego2global: np.ndarray
    """float64 (4, 4) LIDAR_TOP keyframe ego pose: the pose the history warp uses (official)."""
    stamp_ns: int
    """CAM_FRONT stamp, nanoseconds."""


def keyframe_inputs(nusc: Any, sample_token: str) -> KeyframeInputs:
    """Camera frames of one nuScenes sample in the key-ego convention (gsdocc_model.md section 1)."""
    from PIL import Image

    from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA, CameraFrame
    from gsdocc_ros.pipeline.geometry import camera_to_key_ego, make_transform, quaternion_wxyz_to_matrix

    def pose(record: dict) -> np.ndarray:
        return make_transform(quaternion_wxyz_to_matrix(record["rotation"]), record["translation"])

    sample = nusc.get("sample", sample_token)
    cams = {name: nusc.get("sample_data", sample["data"][name]) for name in CAMERA_NAMES}
    key_pose = pose(nusc.get("ego_pose", cams[KEY_CAMERA]["ego_pose_token"]))
    frames = []
    for name in CAMERA_NAMES:
        data = cams[name]
        sensor = nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
        path = Path(nusc.dataroot) / data["filename"]
        frames.append(CameraFrame(
            name=name,
            image=np.asarray(Image.open(path).convert("RGB")),
            intrinsics=np.asarray(sensor["camera_intrinsic"], dtype=np.float64),
            cam_to_ego=camera_to_key_ego(pose(sensor), pose(nusc.get("ego_pose", data["ego_pose_token"])), key_pose),
            stamp_ns=int(data["timestamp"]) * 1000,
        ))
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    return KeyframeInputs(frames, pose(nusc.get("ego_pose", lidar["ego_pose_token"])),
                          int(cams[KEY_CAMERA]["timestamp"]) * 1000)


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
            write_grid_file(self.save_dir / f"{token}.npz", labels, stamp_ns=inputs.stamp_ns)
        return labels


def _run(args: argparse.Namespace) -> int:
    """gsdocc eval run: the model over a nuScenes split, scored against the Occ3D tree."""
    version_dir = args.dataroot / args.version
    if not version_dir.is_dir():
        raise ToolError(f"nuScenes tables {version_dir} do not exist (check --dataroot and --version)")
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
        runner = OccupancyRunner(model, RunnerConfig(device=device, precision=args.precision,
                                                     cadence_tolerance_s=0.2, confidence=False), source=source)
    except (ValueError, FileNotFoundError) as error:
        raise ToolError(str(error)) from None
    predictor = ModelPredictor(nusc, runner, save_dir)
    outcome = evaluate_distributed(scenes, predictor, gt_loader(args.gt), rank, world_size, device)
    if rank != 0:
        return 0
    for reset in predictor.unexpected_resets:
        print(f"warning: cache reset inside a scene at {reset}", file=sys.stderr)
    if outcome.no_gt:
        print(f"warning: {len(outcome.no_gt)} samples without ground truth were run but not scored", file=sys.stderr)
    return _finish(outcome, args, f"{source}: {args.version} {split or 'scenes'} ({len(outcome.scored)} samples)",
                   command="run", dataroot=str(args.dataroot), version=args.version, split=split,
                   gt_root=str(args.gt), checkpoint=str(args.checkpoint), source=source, world_size=world_size,
                   device=device, unexpected_resets=predictor.unexpected_resets)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc eval {score,run}``."""
    parser = subparsers.add_parser(VERB, help="Occ3D mIoU of prediction files or of the model on nuScenes",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="{score,run}")
    score = actions.add_parser("score", help="score <token>.npz prediction files against Occ3D ground truth")
    score.add_argument("--pred", type=Path, required=True, help="folder of <sample token>.npz predictions")
    model_run = actions.add_parser("run", help="run the model over a nuScenes split and score it")
    model_run.add_argument("--dataroot", type=Path, required=True, help="nuScenes root (holds samples/ and VERSION/)")
    model_run.add_argument("--version", default="v1.0-mini", help="nuScenes version folder (default: %(default)s)")
    model_run.add_argument("--checkpoint", type=Path, required=True, help="GSD-OCC checkpoint (official or own format)")
    model_run.add_argument("--trust-pickle", action="store_true", help="allow arbitrary unpickling of the checkpoint")
    model_run.add_argument("--split", help="nuScenes split name (default: mini_val for v1.0-mini, val for v1.0-trainval)")
    model_run.add_argument("--scenes", nargs="+", help="scene names to evaluate instead of the split")
    model_run.add_argument("--device", default="cpu", help="cpu or cuda (torchrun ranks use cuda:LOCAL_RANK)")
    model_run.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="inference precision")
    model_run.add_argument("--save-predictions", action="store_true",
                     help=f"also write OUT/{PREDICTIONS_DIR}/<token>.npz (re-scorable with `gsdocc eval score`)")
    for sub in (score, model_run):
        sub.add_argument("--gt", type=Path, required=True, help="Occ3D ground truth root: <scene>/<token>/labels.npz")
        sub.add_argument("--out", type=Path, default=Path("out/eval"), help="output folder (default: %(default)s)")
        sub.add_argument("--allow-missing", action="store_true",
                         help="report samples without prediction (score) or ground truth (run) instead of failing")
        sub.add_argument("--force", action="store_true", help=f"overwrite {RESULT_JSON} / {RESULT_PNG} in OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc eval score|run``; returns 0, or raises ToolError (exit 2) naming what is wrong."""
    return _score(args) if args.action == "score" else _run(args)
