"""Contiguous vs channels-last weights: per-stage time of the network forward and post-processing, interleaved.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_channels_last.py [--device cpu] [--runs 3]
Runs the two layouts alternately on the real scene-0061 images (seeded random weights, 256x704) so that both see
the same machine load, and prints per stage the median wall time and, on CPU, the median process CPU time (user +
system, all threads): on a shared machine CPU time tracks the work done, wall time also the waiting.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import time
from collections.abc import Callable

import torch

from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.gsdocc import GSDOCC, logits_to_labels
from gsdocc_ros.model.inputs import ModelInputs
from gsdocc_ros.model.temporal import TemporalCache
from gsdocc_ros.pipeline.acceleration import to_channels_last
from gsdocc_ros.pipeline.frames import load_sample_frames
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model
from gsdocc_ros.io.sample_location import sample_data_folder

SCENE = sample_data_folder() / "nuscenes_sample" / "scene-0061_ca9a282c"


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def staged_forward(model: GSDOCC, inputs: ModelInputs, device: torch.device) -> dict[str, tuple[float, float]]:
    """(wall ms, CPU ms) of each stage of one start-of-sequence forward plus the post-processing."""
    cache = TemporalCache(model.cfg.history_frames, model.cfg.grid)
    motion = torch.eye(4, dtype=torch.float64, device=device)[None]
    times: dict[str, tuple[float, float]] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter(), cpu_seconds()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times[name] = ((time.perf_counter() - wall) * 1e3, (cpu_seconds() - cpu) * 1e3)
        return out

    feats = timed("image_encoder", lambda: model.encode_images(inputs.imgs))
    depth, context = timed("depth_net", lambda: model.estimate_depth(feats, inputs))
    voxel = timed("bev_pool", lambda: model.lift(depth, context, inputs))
    fused = timed("temporal_fusion", lambda: model.fuse(voxel, inputs, cache, motion, True))
    bev = timed("bev_encoder", lambda: model.encode_bev(fused))
    logits = timed("occ_head", lambda: model.head(bev, fused, voxel))
    timed("postprocess", lambda: [t.cpu() for t in logits_to_labels(logits.float())])
    times["network"] = tuple(sum(v[i] for k, v in times.items() if k != "postprocess") for i in (0, 1))
    return times


def main() -> None:
    """Alternate the two layouts and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3, help="timed forwards per layout (after one warm-up each)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, _ = load_model(None, ModelConfig(), allow_random_weights=True)
    runner = OccupancyRunner(model, RunnerConfig(device=args.device, channels_last=False))
    inputs = runner.prepare_inputs(load_sample_frames(SCENE).frames)
    models = {"contiguous": runner.model, "channels_last": to_channels_last(copy.deepcopy(runner.model))}
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, variant in models.items():
            staged_forward(variant, inputs, device)
        for _ in range(args.runs):
            for name, variant in models.items():
                runs[name].append(staged_forward(variant, inputs, device))
    print(f"device {device}, {torch.get_num_threads()} threads, {args.runs} runs per layout; wall ms / CPU ms")
    print(f"{'stage':16s} " + " ".join(f"{name:>24s}" for name in models))
    for stage in runs["contiguous"][0]:
        cells = []
        for name in models:
            wall = statistics.median(run[stage][0] for run in runs[name])
            cpu = statistics.median(run[stage][1] for run in runs[name])
            cells.append(f"{wall:11.0f} / {cpu:10.0f}")
        print(f"{stage:16s} " + " ".join(f"{cell:>24s}" for cell in cells))


if __name__ == "__main__":
    main()
