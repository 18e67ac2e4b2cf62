"""CPU/GPU timing of the LSS splat: cached indices vs recomputed indices vs the slow reference.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_bev_pool.py [--device cpu] [--input 256 704] [--repeats 20]
       [--threads 2]
Uses a synthetic nuScenes-like six-camera ring; prints the best milliseconds per call.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.inputs import ModelInputs
from gsdocc_ros.model.view_transform import LSSViewTransform, bev_pool_reference
from gsdocc_ros.pipeline.preprocess import image_transform

CAMERA_YAWS_DEG = (55.0, 0.0, -55.0, 110.0, 180.0, -110.0)
"""Yaw of each camera of the synthetic ring, nuScenes order (front-left, front, front-right, back-left, ...)."""


def ring_inputs(height: int, width: int, device: torch.device) -> ModelInputs:
    """Calibration of a six-camera ring 1.5 m up with nuScenes' front intrinsics (images left empty)."""
    cam_axes = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # OpenCV camera -> ego at yaw 0
    rots = []
    for yaw in CAMERA_YAWS_DEG:
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        rots.append(torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ cam_axes)
    rots = torch.stack(rots)[None]  # (1, 6, 3, 3)
    trans = (rots[..., 2] * 0.5 + torch.tensor([1.0, 0.0, 1.5]))  # 0.5 m out along each optical axis
    intrins = torch.tensor([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]]).expand(1, 6, 3, 3)
    transform = image_transform((900, 1600), (height, width))
    post_rots = torch.from_numpy(transform.post_rot).expand(1, 6, 3, 3)
    post_trans = torch.from_numpy(transform.post_tran).expand(1, 6, 3)
    return ModelInputs(imgs=torch.empty(1, 6, 3, 0, 0, device=device), rots=rots.to(device),
                       trans=trans.to(device), intrins=intrins.to(device), post_rots=post_rots.to(device),
                       post_trans=post_trans.to(device), bda=torch.eye(3, device=device)[None])


def best_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of ``fn`` in milliseconds after one warm-up call (robust to other load on the machine)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def main() -> None:
    """Time the three splat variants and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input", type=int, nargs=2, default=(256, 704), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = ModelConfig.for_input_size(*args.input)
    module = LSSViewTransform(cfg).to(device)
    inputs = ring_inputs(*args.input, device)
    feat_h, feat_w = cfg.image.feature_size
    depth = torch.rand(1, 6, cfg.grid.num_depth_bins, feat_h, feat_w, device=device).softmax(dim=2)
    context = torch.rand(1, 6, cfg.context_channels, feat_h, feat_w, device=device)
    with torch.no_grad():
        cached = best_ms(lambda: module(depth, context, inputs), args.repeats, device)
        uncached = module.rebuilt("indices", index_cache=False)
        recomputed = best_ms(lambda: uncached(depth, context, inputs), args.repeats, device)
        points = module.points(inputs.rots, inputs.trans, inputs.intrins, inputs.post_rots, inputs.post_trans,
                               inputs.bda)
        reference = best_ms(lambda: bev_pool_reference(depth, context, points, cfg.grid),
                              max(1, args.repeats // 10), device)
    kept = module.pool_indices(inputs.rots, inputs.trans, inputs.intrins, inputs.post_rots, inputs.post_trans,
                               inputs.bda).depth_index.numel()
    print(f"device={device} input={args.input[0]}x{args.input[1]} threads={torch.get_num_threads()} "
          f"frustum points={points[..., 0].numel()} kept={kept}")
    print(f"cached indices     {cached:8.1f} ms")
    print(f"recomputed indices {recomputed:8.1f} ms")
    print(f"reference          {reference:8.1f} ms")


if __name__ == "__main__":
    main()
