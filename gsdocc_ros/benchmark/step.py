"""One camera set through the node's step, stage by stage: the bench's inputs, the runner it drives, the step.

A step is what the node does with one camera set: decode the six real nuScenes JPEGs (image_decode.decode_image),
OccupancyRunner.step (preprocessing, the network stage by stage, argmax and the device -> host copy, the grid),
then the SemanticVoxelGrid message and the serialised MarkerArray, built from the real Occ3D ground truth so that
their cost is that of a realistic scene whatever random weights predict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sensor_msgs.msg import CompressedImage

from gsdocc_ros.benchmark.config import BenchConfig
from gsdocc_ros.benchmark.timing import StageClock, synchronize
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.pipeline.frames import CameraFrame, load_sample_frames
from gsdocc_ros.pipeline.grid import OccupancyGrid
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, StepResult, load_model
from gsdocc_ros.ros.conversions import grid_to_message
from gsdocc_ros.ros.image_decode import decode_executor, decode_image
from gsdocc_ros.ros.markers import build_markers_cdr

MODEL_STAGES = {"encode_images": "image_encoder", "estimate_depth": "depth_net", "lift": "bev_pool",
                "fuse": "temporal_fusion", "encode_bev": "bev_encoder", "head": "occ_head"}
"""GSDOCC stage method -> stage name; forward calls them in this order."""
NETWORK_STAGES = tuple(MODEL_STAGES.values())
STAGES = ("decode", "preprocess", *NETWORK_STAGES, "postprocess", "grid", "grid_message", "markers")
"""Every timed stage of a step, in order; postprocess = softmax, argmax, transposes and the device -> host copy."""
MARKER_LIFETIME_S = 1.0
FRAME_ID = "base_link"


@dataclasses.dataclass
class BenchSetup:
    """Everything one bench run needs, made once before timing."""

    runner: OccupancyRunner
    messages: list[CompressedImage]
    """The six real JPEGs as the node receives them, model camera order."""
    frames: list
    """CameraFrames with calibration (their images are replaced by each run's decode)."""
    ego2global: np.ndarray
    output_labels: np.ndarray
    """uint8 (X, Y, Z) labels the output messages are built from."""
    labels_source: str
    stamp_ns: int
    decoders: ThreadPoolExecutor
    """The node's image decoding threads (image_decode.decode_executor)."""


def build_runner(config: BenchConfig) -> tuple[OccupancyRunner, str]:
    """The runner the bench drives, on ``config``'s weights and settings; with what weights it runs."""
    cfg = ModelConfig.for_input_size(*config.input_size)
    model, weights = load_model(config.checkpoint, cfg, allow_random_weights=True, seed=config.seed)
    runner = OccupancyRunner(model, RunnerConfig(device=config.device, precision=config.precision,
                                                 splat=config.splat, preprocess=config.preprocess,
                                                 channels_last=config.channels_last))
    return runner, weights


def load_messages(scene: Path, cameras: dict[str, dict]) -> list[CompressedImage]:
    """CompressedImage messages holding the scene's original JPEG bytes, model camera order."""
    messages = []
    for name, record in cameras.items():
        msg = CompressedImage(format="jpeg", data=(scene / record["image"]).read_bytes())
        msg.header.frame_id = name
        messages.append(msg)
    return messages


def make_setup(runner: OccupancyRunner, scene: Path, labels: Path | None) -> BenchSetup:
    """The bench inputs from a nuscenes_sample ``scene``; output labels from ``labels`` (an Occ3D labels.npz) or,
    when None, from one (untimed) step of ``runner``."""
    sample = load_sample_frames(scene)
    setup = BenchSetup(runner=runner, messages=load_messages(scene, sample.cameras), frames=sample.frames,
                       ego2global=sample.key_ego2global, output_labels=None, labels_source="predicted",
                       stamp_ns=sample.stamp_ns, decoders=decode_executor(len(sample.frames)))
    if labels is not None:
        with np.load(labels) as data:
            setup.output_labels = data["semantics"]
        setup.labels_source = f"{labels.name} (real Occ3D ground truth)"
    else:
        with torch.inference_mode():
            setup.output_labels = runner.step(sample.frames, setup.ego2global, setup.stamp_ns).grid.labels
    return setup


@contextlib.contextmanager
def instrumented(runner: OccupancyRunner, clock: StageClock) -> Iterator[None]:
    """Time the runner's preprocessing and the model's stage methods with ``clock`` (instance attributes)."""
    targets = [(runner, "prepare_inputs", "preprocess")] + [(runner.model, m, s) for m, s in MODEL_STAGES.items()]
    shadowed = [owner.__dict__.get(method) for owner, method, _ in targets]  # instance overrides to put back
    for owner, method, stage in targets:
        setattr(owner, method, clock.wrap(stage, getattr(owner, method)))
    try:
        yield
    finally:
        for (owner, method, _), previous in zip(targets, shadowed):
            if previous is None:
                delattr(owner, method)
            else:
                setattr(owner, method, previous)


def decode_set(setup: BenchSetup, decoder: str) -> list[np.ndarray]:
    """The six images decoded side by side on the node's decoding threads."""
    return list(setup.decoders.map(lambda msg: decode_image(msg, decoder), setup.messages))


def decoded_frames(setup: BenchSetup, decoder: str) -> tuple[list[CameraFrame], int]:
    """The six images decoded as the node does, in the sample's frames; the next keyframe stamp."""
    images = decode_set(setup, decoder)
    setup.stamp_ns += round(setup.runner.config.history_step_s * 1e9)  # every run is a history step
    return [dataclasses.replace(frame, image=image) for frame, image in zip(setup.frames, images)], setup.stamp_ns


def output_grid(setup: BenchSetup, result: StepResult) -> OccupancyGrid:
    """The step's grid with the bench's output labels (the real Occ3D scene unless --labels predicted)."""
    return OccupancyGrid(labels=setup.output_labels, stamp_ns=result.grid.stamp_ns, geometry=result.grid.geometry,
                         confidence=result.grid.confidence, camera_mask=result.grid.camera_mask)


def run_step(setup: BenchSetup, clock: StageClock, decoder: str) -> float:
    """One camera set through decode, runner.step, message and markers; returns the whole step in ms."""
    runner = setup.runner
    synchronize(runner.device)
    start = time.perf_counter()
    with clock.stage("decode"):
        frames, stamp_ns = decoded_frames(setup, decoder)
    result = runner.step(frames, setup.ego2global, stamp_ns)
    middle = time.perf_counter()
    grid = output_grid(setup, result)
    resume = time.perf_counter()
    with clock.stage("grid_message"):
        grid_to_message(grid, FRAME_ID, runner.source)
    with clock.stage("markers"):
        build_markers_cdr(grid, FRAME_ID, MARKER_LIFETIME_S)
    end = time.perf_counter()
    network = sum(clock.times.get(stage, 0.0) for stage in NETWORK_STAGES)
    clock.times["postprocess"] = result.timings_ms["network"] - network
    clock.times["grid"] = result.timings_ms["postprocess"]
    return (middle - start + end - resume) * 1e3


def captured_step(setup: BenchSetup, clock: StageClock, decoder: str) -> dict[str, tuple[tuple[Any, ...], Any]]:
    """One (untimed) step under ``instrumented``; each stage's arguments and result, by stage name."""
    clock.capture = True
    try:
        run_step(setup, clock, decoder)
    finally:
        clock.capture = False
    return clock.captured
