"""RViz markers of the real Occ3D ground-truth grid: counts, colours, positions, options, and the slow twin."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import rclpy  # noqa: E402 (a missing rclpy is a broken install: fail, never skip)
from rclpy.serialization import deserialize_message  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_COLORS, GridGeometry, OccupancyGrid  # noqa: E402
from gsdocc_ros.ros.markers import build_markers, build_markers_cdr, build_markers_reference  # noqa: E402

STAMP_NS = 1_532_402_927_612_460_000


@pytest.fixture(scope="module")
def gt(shared_data: Path) -> dict[str, np.ndarray]:
    """The real Occ3D labels.npz arrays (semantics, mask_camera, mask_lidar), (200, 200, 16) uint8."""
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def grid(gt: dict[str, np.ndarray]) -> OccupancyGrid:
    """The ground truth as a grid with its camera mask."""
    return OccupancyGrid(labels=gt["semantics"], stamp_ns=STAMP_NS, camera_mask=gt["mask_camera"].astype(bool))


def points_of(marker: Marker) -> np.ndarray:
    """(M, 3) float64 points of a marker."""
    return np.array([(p.x, p.y, p.z) for p in marker.points]).reshape(-1, 3)


def test_one_cube_list_per_present_class_at_the_voxel_centres(grid: OccupancyGrid) -> None:
    markers = build_markers(grid, "base_link", lifetime_s=1.5).markers
    assert markers[0].action == Marker.DELETEALL and markers[0].header.frame_id == "base_link"
    semantics = grid.labels
    present = [c for c in range(len(CLASS_NAMES)) if c != FREE_INDEX and np.any(semantics == c)]
    assert [m.ns for m in markers[1:]] == [CLASS_NAMES[c] for c in present]
    assert "free" not in {m.ns for m in markers}
    assert sum(len(m.points) for m in markers) == np.count_nonzero(semantics != FREE_INDEX) == 39092
    for marker in markers[1:]:
        label = CLASS_NAMES.index(marker.ns)
        assert marker.type == Marker.CUBE_LIST and marker.action == Marker.ADD and marker.id == label
        assert (marker.header.stamp.sec, marker.header.stamp.nanosec) == divmod(STAMP_NS, 10**9)
        assert (marker.lifetime.sec, marker.lifetime.nanosec) == (1, 500_000_000)
        assert (marker.scale.x, marker.scale.y, marker.scale.z) == (0.4, 0.4, 0.4)
        rgb = (marker.color.r, marker.color.g, marker.color.b)
        assert rgb == pytest.approx(OCC3D_COLORS[label] / 255.0, abs=1e-7) and marker.color.a == 1.0
        expected = grid.geometry.centres(np.argwhere(semantics == label))  # C order
        assert np.array_equal(points_of(marker), expected.astype(np.float64)), marker.ns
    index = np.argwhere(semantics == 0)[0]  # spot-check one centre against the Occ3D formula (README of the data)
    assert points_of(markers[1])[0] == pytest.approx(np.array([-40.0, -40.0, -1.0]) + 0.4 * index + 0.2, abs=1e-5)


def test_hidden_classes_and_camera_visible_only(grid: OccupancyGrid) -> None:
    hidden = ("driveable_surface", "vegetation")
    markers = build_markers(grid, "base_link", 1.0, hidden_classes=hidden).markers
    assert not {m.ns for m in markers} & set(hidden)
    assert sum(len(m.points) for m in markers) == np.count_nonzero(
        ~np.isin(grid.labels, [FREE_INDEX, CLASS_NAMES.index(hidden[0]), CLASS_NAMES.index(hidden[1])]))
    seen = build_markers(grid, "base_link", 1.0, camera_visible_only=True).markers
    visible = grid.camera_mask & (grid.labels != FREE_INDEX)
    assert sum(len(m.points) for m in seen) == np.count_nonzero(visible)
    for marker in seen[1:]:
        assert len(marker.points) == np.count_nonzero(visible & (grid.labels == CLASS_NAMES.index(marker.ns)))


def test_max_voxels_keeps_the_nearest_to_the_ego(grid: OccupancyGrid) -> None:
    markers = build_markers(grid, "base_link", 1.0, max_voxels=5000).markers
    kept = np.concatenate([points_of(m) for m in markers[1:]])
    assert len(kept) == 5000
    centres = grid.geometry.centres(np.argwhere(grid.labels != FREE_INDEX)).astype(np.float64)
    distance = np.sort(np.linalg.norm(centres, axis=1))
    assert np.linalg.norm(kept, axis=1).max() == pytest.approx(distance[4999])


def test_reference_twin_gives_the_same_message(grid: OccupancyGrid, gt: dict[str, np.ndarray]) -> None:
    reference = build_markers_reference(grid, "base_link", 1.0)
    assert build_markers(grid, "base_link", 1.0) == reference
    assert deserialize_message(build_markers_cdr(grid, "base_link", 1.0), MarkerArray) == reference
    # options on a 48x40 crop in front of the ego (keeps the per-voxel twin fast), non-default geometry
    crop = (slice(100, 148), slice(80, 120), slice(None))
    small = OccupancyGrid(labels=gt["semantics"][crop], stamp_ns=STAMP_NS, camera_mask=gt["mask_camera"][crop] > 0,
                          geometry=GridGeometry(origin=(0.0, -8.0, -1.0), voxel_size=0.4, size=(48, 40, 16)))
    for options in ({"hidden_classes": ("manmade",)}, {"camera_visible_only": True}, {"max_voxels": 700},
                    {"max_voxels": 300, "camera_visible_only": True, "hidden_classes": ("car", "vegetation")}):
        fast = build_markers(small, "ego", 0.25, **options)
        reference = build_markers_reference(small, "ego", 0.25, **options)
        assert fast == reference, options
        assert deserialize_message(build_markers_cdr(small, "ego", 0.25, **options), MarkerArray) == reference
        assert len(fast.markers) > 2, options


def test_options_are_checked(grid: OccupancyGrid) -> None:
    with pytest.raises(ValueError, match=r"hidden_classes: unknown class name\(s\) \['cars'\]"):
        build_markers(grid, "base_link", 1.0, hidden_classes=("cars",))
    unmasked = OccupancyGrid(labels=grid.labels, stamp_ns=STAMP_NS)
    with pytest.raises(ValueError, match="camera_visible_only: grid.camera_mask is None"):
        build_markers(unmasked, "base_link", 1.0, camera_visible_only=True)
    empty = OccupancyGrid(labels=np.full((4, 4, 2), FREE_INDEX, np.uint8), stamp_ns=STAMP_NS,
                          geometry=GridGeometry(size=(4, 4, 2)))
    assert [m.action for m in build_markers(empty, "base_link", 1.0).markers] == [Marker.DELETEALL]


def test_serialised_markers_publish_and_arrive_as_a_marker_array(grid: OccupancyGrid, ros_domain: int) -> None:
    data = build_markers_cdr(grid, "base_link", 1.0, camera_visible_only=True)
    received: list[MarkerArray] = []
    rclpy.init()
    try:
        node = rclpy.create_node("marker_test")
        publisher = node.create_publisher(MarkerArray, "markers", 1)
        node.create_subscription(MarkerArray, "markers", received.append, 1)
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            publisher.publish(data)  # raw CDR bytes, as the node publishes them
            rclpy.spin_once(node, timeout_sec=0.2)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    assert received and received[0] == build_markers_reference(grid, "base_link", 1.0, camera_visible_only=True)
