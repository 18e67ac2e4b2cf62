"""CPU cost and size of the two viewer outputs, ~/markers (MarkerArray) and ~/occupied_points (PointCloud2).

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_viewer_outputs.py [--repeats 20] [--network]
Grids: the real Occ3D ground truth (39,092 occupied voxels), the densest grid any output can be (all 640,000 voxels
occupied, labels cycling over the 17 classes) and, with --network, the network's own grid on the real scene-0061
keyframe (seeded random weights at 256x704: no checkpoint is needed to size the output). Per grid and output:
build and serialise milliseconds (median), bytes on the wire, and what RViz receives to draw.
"""

from __future__ import annotations

import argparse

import numpy as np
from rclpy.serialization import serialize_message

from gsdocc_ros.pipeline.grid import FREE_INDEX, OccupancyGrid
from gsdocc_ros.ros.markers import build_markers_cdr
from gsdocc_ros.ros.point_cloud import BACKEND, build_point_cloud
from gsdocc_ros.io.sample_location import sample_data_folder

from bm_markers import median_ms  # the script's own folder is on sys.path

DATA = sample_data_folder()
LABELS = DATA / "occ3d_sample" / "labels.npz"
SCENE = DATA / "nuscenes_sample" / "scene-0061_ca9a282c"


def network_labels() -> np.ndarray:
    """The network's labels (X, Y, Z) on the real scene-0061 keyframe, seeded random weights, 256x704."""
    from gsdocc_ros.pipeline.frames import load_sample_frames
    from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model

    sample = load_sample_frames(SCENE)
    model, _ = load_model(None, allow_random_weights=True)
    result = OccupancyRunner(model, RunnerConfig()).step(sample.frames, sample.key_ego2global, sample.stamp_ns)
    return result.grid.labels


def grids(network: bool) -> dict[str, OccupancyGrid]:
    """The real grid, the fully occupied one and optionally the network's, each with a confidence field."""
    with np.load(LABELS) as data:
        labels = {"real Occ3D": data["semantics"]}
    labels["all occupied"] = (np.arange(labels["real Occ3D"].size) % FREE_INDEX).astype(np.uint8).reshape(200, 200, 16)
    if network:
        labels["network, random weights"] = network_labels()
    rng = np.random.default_rng(0)
    return {name: OccupancyGrid(labels=grid, stamp_ns=0, confidence=rng.integers(0, 256, grid.shape, np.uint8))
            for name, grid in labels.items()}


def main() -> None:
    """Print one line per grid and output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--network", action="store_true", help="also the network's grid (one CPU forward, ~10 s)")
    args = parser.parse_args()
    print(f"point cloud packer: {BACKEND}")
    for name, grid in grids(args.network).items():
        voxels = int(np.count_nonzero(grid.labels != FREE_INDEX))
        markers = build_markers_cdr(grid, "base_link", 1.0)  # built and serialised in one pass
        cloud = build_point_cloud(grid, "base_link")
        rows = [
            ("markers: build + serialise", median_ms(lambda: build_markers_cdr(grid, "base_link", 1.0), args.repeats),
             len(markers), f"{len(np.unique(grid.labels[grid.labels != FREE_INDEX]))} CUBE_LISTs + DELETEALL, "
                           f"{voxels} float64 points"),
            ("points: build", median_ms(lambda: build_point_cloud(grid, "base_link"), args.repeats), None, ""),
            ("points: serialise", median_ms(lambda: serialize_message(cloud), args.repeats),
             len(serialize_message(cloud)), f"1 cloud, {cloud.width} points of {cloud.point_step} bytes"),
        ]
        print(f"{name}: {voxels} occupied voxels")
        for what, ms, size, draws in rows:
            print(f"  {what:28s} {ms:8.1f} ms  {'' if size is None else f'{size:>12,} bytes'}  {draws}")


if __name__ == "__main__":
    main()
