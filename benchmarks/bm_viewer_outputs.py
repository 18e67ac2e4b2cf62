"""CPU cost and size of the two viewer outputs, ~/markers (MarkerArray) and ~/occupied_points (PointCloud2).

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_viewer_outputs.py [--repeats 20]
Grids: the real Occ3D ground truth (39,092 occupied voxels) and the densest grid any output can be (all 640,000
voxels occupied, labels cycling over the 17 classes). Per grid and output: build and serialise milliseconds
(median), bytes on the wire, and what RViz receives to draw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message

from gsdocc_ros.pipeline.grid import FREE_INDEX, OccupancyGrid
from gsdocc_ros.ros.markers import build_markers_cdr
from gsdocc_ros.ros.point_cloud import BACKEND, build_point_cloud

from bm_markers import median_ms  # the script's own folder is on sys.path

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "occ3d_sample" / "labels.npz"


def grids() -> dict[str, OccupancyGrid]:
    """The real grid and the fully occupied one, both with a confidence field."""
    with np.load(LABELS) as data:
        real = data["semantics"]
    dense = (np.arange(real.size) % FREE_INDEX).astype(np.uint8).reshape(real.shape)
    rng = np.random.default_rng(0)
    return {name: OccupancyGrid(labels=labels, stamp_ns=0, confidence=rng.integers(0, 256, labels.shape, np.uint8))
            for name, labels in (("real Occ3D", real), ("all occupied", dense))}


def main() -> None:
    """Print one line per grid and output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement")
    args = parser.parse_args()
    print(f"point cloud packer: {BACKEND}")
    for name, grid in grids().items():
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
