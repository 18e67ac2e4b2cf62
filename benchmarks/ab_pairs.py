"""A/B pairs of the node's optimisations: each pair timed alternately in one process on the same inputs, with a
check that both variants give the same output.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/ab_pairs.py [--device cpu|cuda] [--precision fp32|fp16|bf16]
       [--input-size 256x704|512x1408] [--runs 3] [--json OUT]

Pairs (baseline / optimised): the large-kernel 3D block in training form / re-parameterised at load; the BEV-pool
indices recomputed every frame / cached per calibration; the cached sparse product / the fixed-size scatter (the
CUDA path); the six JPEGs decoded one after the other / side by side; Pillow / simplejpeg; markers built voxel by
voxel / as vectorised CDR; Pillow preprocessing on the host / torch on the device. The pooling and the block get
the inputs of one step of the runner `gsdocc bench` drives, on the real scene; the markers the real Occ3D grid.
Speed-up = baseline median / optimised median, each median over --runs calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gsdocc_ros.benchmark.config import DEFAULT_LABELS, DEFAULT_SCENE, BenchConfig, input_size, positive
from gsdocc_ros.benchmark.machine import machine
from gsdocc_ros.benchmark.step import (FRAME_ID, MARKER_LIFETIME_S, BenchSetup, build_runner, captured_step,
                                       decode_set, instrumented, make_setup)
from gsdocc_ros.benchmark.timing import StageClock, summarise, timed_ms
from gsdocc_ros.model.reparam_conv3d import UniRepLKNetBlock
from gsdocc_ros.pipeline.acceleration import to_channels_last
from gsdocc_ros.pipeline.choices import PRECISION_NAMES
from gsdocc_ros.pipeline.grid import FREE_INDEX, OccupancyGrid
from gsdocc_ros.pipeline.preprocess import IMAGE_STD_RGB, preprocess_images
from gsdocc_ros.pipeline.runner import PRECISIONS
from gsdocc_ros.pipeline.torch_preprocess import TorchPreprocessor
from gsdocc_ros.ros.image_decode import DEFAULT_JPEG_DECODER, JPEG_DECODERS, decode_image, decode_threads
from gsdocc_ros.ros.markers import build_markers, build_markers_cdr, build_markers_reference

CHECKS = ("max_abs_diff", "rel_diff", "outputs_equal", "max_abs_diff_levels")
"""Keys of a pair that say whether both variants agree."""


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The runner's autocast for ``precision`` (a no-op for fp32), for the pairs run outside the runner."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def ab_pair(baseline: Callable[[], object], optimised: Callable[[], object], runs: int,
            device: torch.device) -> dict[str, Any]:
    """Time both variants alternately (one warm-up call each); speed-up = baseline median / optimised median."""
    baseline(), optimised()
    times: dict[str, list[float]] = {"baseline": [], "optimised": []}
    for _ in range(runs):
        times["baseline"].append(timed_ms(baseline, device))
        times["optimised"].append(timed_ms(optimised, device))
    out = {f"{name}_ms": summarise(values) for name, values in times.items()}
    out["speedup"] = out["baseline_ms"]["median"] / out["optimised_ms"]["median"]
    return out


def randomise_statistics(module: nn.Module, seed: int) -> None:
    """Give every BN non-trivial statistics and the layer scale / GRN non-zero values, so a merge is a real test."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.running_mean.copy_(torch.randn(sub.num_features, generator=generator) * 0.1)
                sub.running_var.copy_(torch.rand(sub.num_features, generator=generator) + 0.5)
                sub.weight.copy_(1 + torch.randn(sub.num_features, generator=generator) * 0.1)
                sub.bias.copy_(torch.randn(sub.num_features, generator=generator) * 0.1)
        for name, param in module.named_parameters():
            if name == "gamma" or name.endswith(("act.1.gamma", "act.1.beta")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def ab_pairs(setup: BenchSetup, captured: dict[str, tuple[tuple[Any, ...], Any]], runs: int, precision: str,
             decoder: str, seed: int) -> dict[str, Any]:
    """The pairs, each timed alternately on the runner's device with the same inputs, plus an output check;
    ``captured`` holds the stage inputs and outputs of one step (step.captured_step)."""
    runner, device = setup.runner, setup.runner.device
    cfg = runner.model.cfg
    (depth, context, inputs), voxel_feat = captured["bev_pool"]
    pairs: dict[str, Any] = {}

    training = UniRepLKNetBlock(cfg.context_channels, cfg.large_kernel)
    randomise_statistics(training, seed=seed)
    merged = copy.deepcopy(training)
    merged.reparameterize()
    for block in (training, merged):
        block.to(device).eval()
        if runner.config.channels_last:  # the layout the model runs in
            to_channels_last(block)
    with torch.inference_mode(), autocast(device, precision):
        pair = ab_pair(lambda: training(voxel_feat), lambda: merged(voxel_feat), runs, device)
        a, b = training(voxel_feat).float(), merged(voxel_feat).float()
    pair.update(baseline="training-form UniRepLKNetBlock (dilated branches + BNs)", optimised="re-parameterised",
                max_abs_diff=float((a - b).abs().max()), rel_diff=float((a - b).norm() / b.norm()))
    pairs["reparam_block"] = pair

    view = runner.model.forward_projection
    variants = {"recomputed": view.rebuilt("indices", index_cache=False), "cached": view.rebuilt("indices"),
                "scatter": view.rebuilt("scatter")}
    with torch.inference_mode(), autocast(device, precision):
        def pool(variant: str) -> torch.Tensor:
            return variants[variant](depth, context, inputs)
        pair = ab_pair(lambda: pool("recomputed"), lambda: pool("cached"), runs, device)
        pair["outputs_equal"] = bool(torch.equal(pool("recomputed"), pool("cached")))
        scatter = ab_pair(lambda: pool("cached"), lambda: pool("scatter"), runs, device)
        scatter["max_abs_diff"] = float((pool("cached") - pool("scatter")).abs().max())
    pair.update(baseline="BEV-pool indices recomputed every frame", optimised="indices precomputed per calibration")
    pairs["bev_pool_indices"] = pair
    scatter.update(baseline="sparse product with the cached indices", optimised="fixed-size scatter (no host sync)",
                   used_by_the_runner=view.splat)
    pairs["bev_pool_scatter"] = scatter

    pair = ab_pair(lambda: [decode_image(msg, decoder) for msg in setup.messages],
                   lambda: decode_set(setup, decoder), runs, device)
    pair.update(baseline="the six images one after the other", optimised=f"side by side on "
                f"{decode_threads(len(setup.messages))} threads (image_decode.decode_executor)")
    pairs["decode_threads"] = pair

    decode = {name: (lambda name=name: [decode_image(msg, name) for msg in setup.messages])
              for name in ("pillow", decoder)}
    pair = ab_pair(decode["pillow"], decode[decoder], runs, device)
    diff = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(decode["pillow"](), decode[decoder]()))
    pair.update(baseline="Pillow JPEG decode of the six images", optimised=f"{decoder} (image_decode.decode_image)",
                max_abs_diff=diff)
    pairs["jpeg_decoder"] = pair

    grid = OccupancyGrid(labels=setup.output_labels, stamp_ns=setup.stamp_ns)
    pair = ab_pair(lambda: build_markers_reference(grid, FRAME_ID, MARKER_LIFETIME_S),
                   lambda: build_markers_cdr(grid, FRAME_ID, MARKER_LIFETIME_S), runs, device)
    pair.update(baseline="per-voxel loop (build_markers_reference)", optimised="vectorised CDR (build_markers_cdr)",
                drawn_voxels=int(np.count_nonzero(setup.output_labels != FREE_INDEX)),
                outputs_equal=build_markers(grid, FRAME_ID, MARKER_LIFETIME_S)
                == build_markers_reference(grid, FRAME_ID, MARKER_LIFETIME_S))
    pairs["markers"] = pair

    images = [frame.image for frame in setup.frames]
    on_device = TorchPreprocessor(cfg.image.input_size, device)
    pair = ab_pair(lambda: torch.from_numpy(preprocess_images(images, cfg.image.input_size)[0]).to(device),
                   lambda: on_device(images), runs, device)
    exact = preprocess_images(images, cfg.image.input_size)[0]
    levels = float(np.abs(on_device(images)[0].cpu().numpy() - exact).max() * min(IMAGE_STD_RGB))
    pair.update(baseline="Pillow preprocessing on the host + upload", optimised=f"torch preprocessing on {device}",
                max_abs_diff_levels=round(levels, 3))
    pairs["preprocess"] = pair
    return pairs


def format_pairs(pairs: dict[str, Any]) -> str:
    """One line per pair: medians, speed-up and the output check."""
    lines = [f"{'A/B (baseline vs optimised)':30s} {'baseline ms':>12s} {'optimised ms':>13s} {'speed-up':>9s}  check"]
    for name, pair in pairs.items():
        check = ", ".join(f"{key} {value}" for key, value in pair.items() if key in CHECKS)
        lines.append(f"{name:30s} {pair['baseline_ms']['median']:12.2f} {pair['optimised_ms']['median']:13.2f} "
                     f"{pair['speedup']:9.2f}  {check}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the runner and its inputs as `gsdocc bench` does, time the pairs, print them, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=PRECISION_NAMES, default="fp32", help="fp16 on CUDA only")
    parser.add_argument("--input-size", type=input_size, default=(256, 704), metavar="HxW")
    parser.add_argument("--runs", type=positive, default=3, help="timed calls per variant (default 3)")
    parser.add_argument("--checkpoint", type=Path, help="GSD-OCC weights (default: seeded random weights)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and BN statistics")
    parser.add_argument("--scene", type=Path, default=DEFAULT_SCENE, help="nuscenes_sample scene folder")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="Occ3D labels.npz of the markers")
    parser.add_argument("--decoder", choices=JPEG_DECODERS, default=DEFAULT_JPEG_DECODER,
                        help="the JPEG decoder compared with Pillow (default: the node's)")
    parser.add_argument("--no-channels-last", action="store_true", help="contiguous conv weights")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the pairs here")
    parser.add_argument("--force", action="store_true", help="overwrite the JSON file if it exists")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available in this torch build or on this machine")
    if args.precision == "fp16" and args.device != "cuda":
        parser.error("--precision fp16 needs --device cuda")
    if args.json is not None and args.json.exists() and not args.force:
        parser.error(f"{args.json} exists; pass --force to overwrite it")
    config = BenchConfig(device=args.device, precision=args.precision, input_size=args.input_size, runs=args.runs,
                         warmup=0, checkpoint=args.checkpoint, seed=args.seed, scene=args.scene, labels=args.labels,
                         decoder=args.decoder, preprocess="auto", splat="auto",
                         channels_last=not args.no_channels_last, compile=None, threads=None, quiet=True)
    runner, weights = build_runner(config)
    setup = make_setup(runner, config.scene, config.labels)
    clock = StageClock(runner.device)
    with torch.inference_mode():
        with instrumented(runner, clock):
            captured = captured_step(setup, clock, config.decoder)
        pairs = ab_pairs(setup, captured, config.runs, config.precision, config.decoder, config.seed)
    print(format_pairs(pairs))
    if args.json is not None:
        result = {"command": " ".join(["benchmarks/ab_pairs.py", *(sys.argv[1:] if argv is None else argv)]),
                  "machine": machine(runner.device), "weights": weights, "ab": pairs}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
