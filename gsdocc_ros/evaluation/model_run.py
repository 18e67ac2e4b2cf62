"""The model over nuScenes keyframes, scored: what `gsdocc eval run` does on each torchrun rank.

Every keyframe of each scene goes through the runner in time order with its temporal cache (reset at each scene
start; extrinsics to the CAM_FRONT ego pose; history warp from the LIDAR_TOP keyframe poses, as the official
evaluation does), and is scored against the Occ3D tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gsdocc_ros.errors import ToolError
from gsdocc_ros.evaluation.scoring import EvalOutcome, RayScoring, evaluate_distributed, gt_loader, gt_path
from gsdocc_ros.io.grid_files import GridInfo, write_grid_file
from gsdocc_ros.pipeline.grid import CLASS_NAMES
from gsdocc_ros.io.nuscenes import keyframe_inputs, load_nuscenes, nuscenes_scene_poses, scene_samples


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
            info = GridInfo(source=self.runner.source, stamp_ns=inputs.stamp_ns, class_names=tuple(CLASS_NAMES))
            write_grid_file(self.save_dir / f"{token}.npz", labels, info=info,
                            ego_pose=inputs.key_ego2global, lidar_to_ego=inputs.lidar_to_ego)
        return labels


@dataclass(frozen=True)
class ModelRun:
    """What `gsdocc eval run` evaluates: nuScenes tables, scenes, ground truth, checkpoint and how to run it."""

    dataroot: Path
    version: str
    scene_names: list[str]
    gt_root: Path
    checkpoint: Path
    device: str = "cpu"
    precision: str = "fp32"
    trust_pickle: bool = False
    rayiou: bool = True
    ray_poses: str = "LIDAR_TOP"
    """Whose keyframe ego poses place the RayIoU origins (see gsdocc_ros/pipeline/ray_metrics.py)."""
    save_dir: Path | None = None
    """Where each keyframe's prediction is written as <token>.npz (with its pose), when set."""
    allow_missing_gt: bool = False
    backend: str = "torch"
    """Runtime of the network (pipeline.choices.BACKENDS); the others run ``graph_dir``'s exported graph."""
    graph_dir: str = ""


def run_model(spec: ModelRun, rank: int = 0, world_size: int = 1) -> tuple[EvalOutcome, ModelPredictor, str]:
    """This rank's share of the scenes through the model, reduced over all ranks: (outcome, predictor, source).

    Every rank checks the same inputs, so all fail alike (ToolError).
    """
    from gsdocc_ros.model.config import ModelConfig
    from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model

    nusc = load_nuscenes(spec.dataroot, spec.version, verbose=rank == 0)
    scenes = scene_samples(nusc, spec.scene_names)
    no_gt = [t for scene, tokens in scenes for t in tokens if not gt_path(spec.gt_root, scene, t).is_file()]
    if no_gt and not spec.allow_missing_gt:
        raise ToolError(f"{len(no_gt)} samples have no {spec.gt_root}/<scene>/<token>/labels.npz, "
                        f"e.g. {no_gt[0]} (--allow-missing runs them unscored)")
    if spec.save_dir is not None:
        spec.save_dir.mkdir(parents=True, exist_ok=True)
    try:
        model, source = load_model(spec.checkpoint, ModelConfig(), trust_pickle=spec.trust_pickle)
        # Official protocol: every keyframe is a history step, though CAM_FRONT keyframe gaps range 0.4-0.6 s.
        runner = OccupancyRunner(model, RunnerConfig(device=spec.device, precision=spec.precision,
                                                     backend=spec.backend, graph_dir=spec.graph_dir,
                                                     cadence_tolerance_s=0.2, confidence=False), source=source)
    except (ValueError, FileNotFoundError) as error:
        raise ToolError(str(error)) from None
    predictor = ModelPredictor(nusc, runner, spec.save_dir)
    rays = RayScoring(nuscenes_scene_poses(nusc, spec.ray_poses), device=spec.device) if spec.rayiou else None
    outcome = evaluate_distributed(scenes, predictor, gt_loader(spec.gt_root), rank, world_size, spec.device,
                                   rays=rays)
    return outcome, predictor, source
