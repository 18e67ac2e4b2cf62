"""The deployment tests' reduced model config and real four-step sequences.

The reduced model keeps every layer of GSD-OCC but runs a 64x176 input on a 51.2 m square grid (64x64x8 lifting
voxels, 128x128x16 output), so one forward takes a fraction of a second on the CPU; the export and the
runtimes see the same operators as at 256x704 (test_export.py exports the full size once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gsdocc_ros.model.config import GridConfig, ImageConfig, ModelConfig, OccupancyConfig
from gsdocc_ros.pipeline.frames import CameraFrame, load_sample_frames
from gsdocc_ros.pipeline.grid import GridGeometry
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig

REDUCED_GEOMETRY = GridGeometry(origin=(-25.6, -25.6, -1.0), size=(128, 128, 16))
REDUCED = ModelConfig(grid=GridConfig(x=(-25.6, 25.6, 0.8), y=(-25.6, 25.6, 0.8)), image=ImageConfig((64, 176)),
                      occupancy=OccupancyConfig(REDUCED_GEOMETRY))
SCENES = ("scene-0061_ca9a282c", "scene-0003_fd842039")
STEP_S = (0.0, 0.5, 0.7, 1.0)
"""Stamps of the four steps: history steps at 0, 0.5 and 1.0 s and a set between them (fractional age 0.4)."""


@dataclass
class Step:
    """One camera set of a test sequence with its ego pose and stamp."""

    frames: list[CameraFrame]
    ego2global: np.ndarray
    stamp_ns: int


def moved(pose: np.ndarray, forward_m: float, yaw_rad: float) -> np.ndarray:
    """``pose`` driven ``forward_m`` along its x axis and turned ``yaw_rad`` left: a known ego motion."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    motion = np.eye(4)
    motion[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    motion[0, 3] = forward_m
    return pose @ motion


def sequence(scene_dir: Path) -> list[Step]:
    """Four sets of a real scene's first keyframe, the ego driving 10 m/s and turning 0.1 rad/s between them."""
    sample = load_sample_frames(scene_dir)
    return [Step(frames=sample.frames, ego2global=moved(sample.key_ego2global, 10.0 * t, 0.1 * t),
                 stamp_ns=sample.stamp_ns + round(t * 1e9)) for t in STEP_S]


def calibrate(model: nn.Module, steps: list[Step]) -> nn.Module:
    """Give seeded random weights realistic activations: BN statistics measured on ``steps``, logits of unit spread.

    Untouched, random weights give logits of ~1e-2 that hardly depend on the input or the history, which would
    make a 1e-4 parity test weak. Every BN takes the mean/variance of its input over the real sequence (train
    mode, cumulative average), then the last convolution is scaled so the logits' largest standard deviation
    over the steps is one.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None  # cumulative average over the calibration steps
        norm.reset_running_stats()
        norm.train()
    spreads: list[float] = []
    hook = model.occupancy_head.register_forward_hook(lambda module, args, out: spreads.append(float(out.std())))
    runner = OccupancyRunner(model, RunnerConfig(cadence="every_frame"))
    for step in steps:
        runner.step(step.frames, step.ego2global, step.stamp_ns)
    for norm in norms:
        norm.eval()
    spreads.clear()
    runner.reset()
    for step in steps:
        runner.step(step.frames, step.ego2global, step.stamp_ns)
    hook.remove()
    with torch.no_grad():
        model.occupancy_head.occ_pred_conv[-1].weight /= max(spreads)
    return model
