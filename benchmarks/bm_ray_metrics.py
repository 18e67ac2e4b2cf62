"""Time to score one Occ3D sample with RayIoU: 8 origins x 14,040 query rays, ground truth and prediction cast.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_ray_metrics.py [--device cpu|cuda] [--repeats 5] [--twin]
Scores the real Occ3D sample (../shared/data/occ3d_sample) against itself shifted by one voxel, with the
origins of keyframe 20 of scene-0103 (../shared/data/nuscenes_sample/mini_val_poses); prints the best and
median seconds per sample; --twin also times the slow per-ray caster once on the same rays.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from gsdocc_ros.pipeline.grid import FREE_INDEX
from gsdocc_ros.pipeline.ray_metrics import RayIoU, cast_rays_reference, lidar_ray_directions, scene_ray_origins
from gsdocc_ros.io.sample_location import sample_data_folder

DATA = sample_data_folder()


def main() -> None:
    """Parse the arguments, time the scoring, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device of the fast caster (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed samples (default: %(default)s)")
    parser.add_argument("--twin", action="store_true", help="also time the slow twin once")
    args = parser.parse_args()
    with np.load(DATA / "occ3d_sample" / "labels.npz") as npz:
        gt = npz["semantics"]
    pred = np.full_like(gt, FREE_INDEX)
    pred[1:] = gt[:-1]
    keyframes = json.loads((DATA / "nuscenes_sample/mini_val_poses/poses.json").read_text())["scenes"]["scene-0103"][
        "keyframes"]
    origins = scene_ray_origins(np.array([k["ego2global"] for k in keyframes]),
                                np.array([k["lidar2ego"] for k in keyframes]), 20)
    directions = lidar_ray_directions()
    times = []
    for _ in range(args.repeats):
        metric = RayIoU()
        start = time.perf_counter()
        metric.update(pred, gt, origins, directions, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    print(f"fast caster ({args.device}, {torch.get_num_threads()} torch threads outside the march): "
          f"{len(origins)} origins x {len(directions)} rays, best {min(times):.2f} s, "
          f"median {statistics.median(times):.2f} s per sample; RayIoU {100 * metric.rayiou():.4f}")
    if args.twin:
        start = time.perf_counter()
        cast_rays_reference(gt, origins, directions)
        cast_rays_reference(pred, origins, directions)
        print(f"slow twin: {time.perf_counter() - start:.1f} s per sample")


if __name__ == "__main__":
    main()
