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
import sys
from pathlib import Path
from typing import Any

from gsdocc_ros.errors import ToolError, require_folder
from gsdocc_ros.model.checkpoint_file import check_checkpoint_file
from gsdocc_ros.pipeline.choices import BACKENDS

VERB = "eval"
PREDICTIONS_DIR = "predictions"
METRICS = ("miou", "rayiou")
RAY_POSE_CHANNELS = ("LIDAR_TOP", "CAM_FRONT")
"""Whose keyframe ego poses place the RayIoU origins: LIDAR_TOP (SparseOcc's) or CAM_FRONT (the grids' stamps)."""


def _finish(outcome: Any, args: argparse.Namespace, title: str, **provenance: Any) -> int:
    """Print the tables, write the outputs, and fail on missing predictions unless allowed."""
    from gsdocc_ros.evaluation.scoring import RESULT_JSON, RESULT_PNG, result_dict, write_results

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


def _refuse_existing_results(args: argparse.Namespace) -> None:
    """ToolError when OUT already holds results, unless --force."""
    from gsdocc_ros.evaluation.scoring import RESULT_JSON, RESULT_PNG
    from gsdocc_ros.io.output import refuse_existing

    refuse_existing([args.out / RESULT_JSON, args.out / RESULT_PNG], args.force)


def _score(args: argparse.Namespace) -> int:
    """gsdocc eval score: prediction files against the Occ3D tree."""
    from gsdocc_ros.io.nuscenes import check_tables, load_nuscenes, nuscenes_scene_poses

    require_folder(args.pred, "prediction")  # before torch is imported
    require_folder(args.gt, "ground-truth")
    if "rayiou" in args.metric and args.dataroot:
        check_tables(args.dataroot, args.version)
    from gsdocc_ros.evaluation.scoring import RayScoring, file_scene_poses, score_files

    _refuse_existing_results(args)
    nusc = load_nuscenes(args.dataroot, args.version) if "rayiou" in args.metric and args.dataroot else None

    def rays(scenes: dict[str, list[str]]) -> RayScoring:
        """RayIoU origins from the nuScenes tables when given, else from the prediction files' poses."""
        poses = nuscenes_scene_poses(nusc, args.ray_poses) if nusc is not None else file_scene_poses(args.pred, scenes)
        return RayScoring(poses, device=args.device)

    poses_from = None if "rayiou" not in args.metric else args.ray_poses if nusc is not None else "prediction files"
    outcome, provenance = score_files(args.pred, args.gt, rays if "rayiou" in args.metric else None)
    return _finish(outcome, args, f"{args.pred.name}: {len(outcome.scored)} samples", command="score",
                   ray_poses=poses_from, **provenance)


def _run(args: argparse.Namespace) -> int:
    """gsdocc eval run: the model over a nuScenes split, scored against the Occ3D tree."""
    from gsdocc_ros.io.nuscenes import DEFAULT_SPLIT, check_tables

    check_tables(args.dataroot, args.version)
    require_folder(args.gt, "ground-truth")
    check_checkpoint_file(args.checkpoint)
    from gsdocc_ros.evaluation.model_run import ModelRun, run_model
    from gsdocc_ros.evaluation.scoring import init_distributed

    _refuse_existing_results(args)
    from nuscenes.utils.splits import create_splits_scenes

    split = None if args.scenes else args.split or DEFAULT_SPLIT.get(args.version)
    splits = create_splits_scenes()
    if not args.scenes and split not in splits:
        raise ToolError(f"--split {split!r} unknown; choose from {', '.join(splits)} or list --scenes")
    rank, world_size, device = init_distributed(args.device)
    spec = ModelRun(args.dataroot, args.version, list(args.scenes or splits[split]), args.gt, args.checkpoint,
                    device, args.precision, args.trust_pickle, "rayiou" in args.metric, args.ray_poses,
                    args.out / PREDICTIONS_DIR if args.save_predictions else None, args.allow_missing,
                    args.backend, str(args.graph_dir or ""))
    try:
        outcome, predictor, source = run_model(spec, rank, world_size)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    if rank != 0:
        return 0
    for reset in predictor.unexpected_resets:
        print(f"warning: cache reset inside a scene at {reset}", file=sys.stderr)
    if outcome.no_gt:
        print(f"warning: {len(outcome.no_gt)} samples without ground truth were run but not scored", file=sys.stderr)
    return _finish(outcome, args, f"{source}: {args.version} {split or 'scenes'} ({len(outcome.scored)} samples)",
                   command="run", dataroot=str(args.dataroot), version=args.version, split=split,
                   gt_root=str(args.gt), checkpoint=str(args.checkpoint), source=source, world_size=world_size,
                   ray_poses=args.ray_poses if spec.rayiou else None,
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
        sub.add_argument("--force", action="store_true", help="overwrite miou.json / miou_per_class.png in OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc eval score|run``; returns 0, or raises ToolError (exit 2) naming what is wrong."""
    return _score(args) if args.action == "score" else _run(args)
