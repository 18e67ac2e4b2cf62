"""CPU timing of RViz marker building for the real Occ3D grid (39k drawn voxels): fast CDR path vs the loop twin.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_markers.py [--repeats 20]
Prints milliseconds per call (median): serialised bytes (what the node publishes), the message as objects,
the per-voxel reference, deserialising the bytes, and what rclpy spends serialising an object-built message on
publish (the cost the bytes path also avoids).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from visualization_msgs.msg import MarkerArray

from gsdocc_ros.pipeline.grid import FREE_INDEX, OccupancyGrid
from gsdocc_ros.ros.markers import build_markers, build_markers_cdr, build_markers_reference
from gsdocc_ros.io.sample_location import sample_data_folder

LABELS = sample_data_folder() / "occ3d_sample" / "labels.npz"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    """Time each builder on the real ground-truth grid and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per variant (the reference runs 3)")
    args = parser.parse_args()
    with np.load(LABELS) as data:
        grid = OccupancyGrid(labels=data["semantics"], stamp_ns=0)
    drawn = int(np.count_nonzero(grid.labels != FREE_INDEX))
    serialised = build_markers_cdr(grid, "base_link", 1.0)
    reference = build_markers_reference(grid, "base_link", 1.0)
    rows = [
        ("build_markers_cdr (bytes, published as is)", median_ms(lambda: build_markers_cdr(grid, "base_link", 1.0),
                                                                 args.repeats)),
        ("build_markers (MarkerArray of Point objects)", median_ms(lambda: build_markers(grid, "base_link", 1.0),
                                                               max(3, args.repeats // 4))),
        ("build_markers_reference (per-voxel loop)", median_ms(lambda: build_markers_reference(grid, "base_link", 1.0),
                                                               3)),
        ("deserialising the bytes into a MarkerArray", median_ms(lambda: deserialize_message(serialised, MarkerArray),
                                                                  max(3, args.repeats // 4))),
        ("rclpy serialise of an object-built message", median_ms(lambda: serialize_message(reference),
                                                                 max(3, args.repeats // 4))),
    ]
    print(f"{drawn} drawn voxels, {LABELS.name}")
    for name, ms in rows:
        print(f"{name:46s} {ms:9.1f} ms")


if __name__ == "__main__":
    main()
