"""Grid <-> SemanticVoxelGrid on the real Occ3D ground truth, strict reading, CameraInfo, transforms, stamps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from gsdocc_ros.msg import SemanticVoxelGrid  # noqa: E402
from gsdocc_ros.pipeline.frames import load_sample_frames  # noqa: E402
from gsdocc_ros.pipeline.grid import CLASS_NAMES, OccupancyGrid  # noqa: E402
from gsdocc_ros.ros.conversions import (  # noqa: E402
    camera_info_to_intrinsics, grid_from_message, grid_to_message, matrix_to_transform, ns_to_stamp, stamp_to_ns,
    transform_to_matrix,
)

STAMP_NS = 1_532_402_927_612_460_000


@pytest.fixture(scope="module")
def grid(shared_data: Path) -> OccupancyGrid:
    """The real Occ3D ground truth with a camera mask and a synthetic confidence."""
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as data:
        labels, mask = data["semantics"], data["mask_camera"]
    confidence = np.random.default_rng(0).integers(0, 256, labels.shape, dtype=np.uint8)
    return OccupancyGrid(labels=labels, stamp_ns=STAMP_NS, confidence=confidence, camera_mask=mask.astype(bool))


def test_real_grid_round_trips_through_the_message_and_the_wire(grid: OccupancyGrid) -> None:
    msg = grid_to_message(grid, "base_link", source="occ3d gt")
    assert (msg.size_x, msg.size_y, msg.size_z) == (200, 200, 16) and msg.free_index == 17
    assert msg.header.frame_id == "base_link" and stamp_to_ns(msg.header.stamp) == STAMP_NS
    assert list(msg.class_names) == list(CLASS_NAMES) and msg.source == "occ3d gt"
    index = (123, 45, 6)  # C order (X, Y, Z): flat = (ix * size_y + iy) * size_z + iz
    assert msg.labels[(index[0] * 200 + index[1]) * 16 + index[2]] == grid.labels[index]
    wire = deserialize_message(serialize_message(msg), SemanticVoxelGrid)
    back = grid_from_message(wire)
    assert np.array_equal(back.labels, grid.labels) and back.labels.dtype == np.uint8
    assert np.array_equal(back.confidence, grid.confidence)
    assert np.array_equal(back.camera_mask, grid.camera_mask) and back.camera_mask.dtype == bool
    assert back.stamp_ns == STAMP_NS and back.geometry == grid.geometry  # voxel_size 0.4 survives float32
    assert np.count_nonzero(back.camera_mask) == 43355  # the file's known count


def test_optional_arrays_stay_absent(grid: OccupancyGrid) -> None:
    plain = OccupancyGrid(labels=grid.labels, stamp_ns=STAMP_NS)
    msg = grid_to_message(plain, "base_link")
    assert len(msg.confidence) == 0 and len(msg.camera_mask) == 0
    back = grid_from_message(msg)
    assert back.confidence is None and back.camera_mask is None


@pytest.mark.parametrize(("field", "change", "message"), [
    ("labels", lambda m: setattr(m, "labels", bytes(m.labels)[:-1]),
     r"SemanticVoxelGrid.labels: 639999 entries, but size_x\*size_y\*size_z = 200\*200\*16 = 640000"),
    ("size_z", lambda m: setattr(m, "size_z", 15), r"SemanticVoxelGrid.labels: 640000 entries, but .* = 600000"),
    ("confidence", lambda m: setattr(m, "confidence", b"\x01" * 10), r"SemanticVoxelGrid.confidence: 10 entries"
                                                                     r".*\(or 0 when not sent\)"),
    ("camera_mask", lambda m: setattr(m, "camera_mask", b"\x02" * 640000), "camera_mask: values must be 0 or 1"),
    ("size_x", lambda m: setattr(m, "size_x", 0), "size_x/size_y/size_z: must all be positive"),
    ("voxel_size", lambda m: setattr(m, "voxel_size", math.nan), "voxel_size: must be positive and finite"),
    ("class_names", lambda m: setattr(m, "class_names", ["a", "b"]), "class_names: expected the 18 Occ3D classes"),
    ("free_index", lambda m: setattr(m, "free_index", 0), "free_index: expected 17, got 0"),
    ("orientation", lambda m: setattr(m.origin.orientation, "z", 1.0), "origin.orientation: only the identity"),
    ("label value", lambda m: m.labels.__setitem__(5, 18), "labels: value 18 has no entry in class_names"),
])
def test_malformed_messages_are_refused_naming_the_field(grid: OccupancyGrid, field: str, change, message: str) -> None:
    msg = grid_to_message(grid, "base_link")
    change(msg)
    with pytest.raises(ValueError, match=message):
        grid_from_message(msg)


def test_writer_refuses_arrays_that_do_not_match_the_geometry(grid: OccupancyGrid) -> None:
    bad = OccupancyGrid(labels=grid.labels, stamp_ns=STAMP_NS, confidence=grid.confidence[:, :, :8])
    with pytest.raises(ValueError, match=r"grid.confidence: shape \(200, 200, 8\) differs from geometry.size"):
        grid_to_message(bad, "base_link")


def camera_info(k: list[float], width: int = 1600, height: int = 900) -> CameraInfo:
    """A CameraInfo with intrinsics ``k`` (row-major 3x3)."""
    msg = CameraInfo(width=width, height=height)
    msg.header.frame_id = "CAM_FRONT"
    msg.k = [float(v) for v in k]
    return msg


def test_camera_info_intrinsics_from_the_real_calibration(shared_data: Path) -> None:
    sample = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c", load_images=False)
    k = sample.frames[1].intrinsics
    intrinsics, size = camera_info_to_intrinsics(camera_info(k.reshape(-1).tolist()))
    assert np.array_equal(intrinsics, k) and intrinsics.dtype == np.float64 and size == (900, 1600)


@pytest.mark.parametrize(("k", "width", "message"), [
    ([0.0] * 9, 1600, "focal lengths fx=0.0, fy=0.0 must be positive"),
    ([1266.4, 0, 816.3, 0, math.nan, 491.5, 0, 0, 1], 1600, "k contains NaN"),
    ([1e9, 0, 816.3, 0, 1266.4, 491.5, 0, 0, 1], 1600, "k has a value above 1e\\+06"),
    ([1266.4, 0, 816.3, 0, 1266.4, 491.5, 0, 0, 0], 1600, r"k must be \[\[fx, s, cx\]"),
    ([1266.4, 0, 1816.3, 0, 1266.4, 491.5, 0, 0, 1], 1600, r"principal point \(1816.3, 491.5\) lies outside"),
    ([1266.4, 0, 816.3, 0, 1266.4, 491.5, 0, 0, 1], 0, "height/width must be positive, got 900x0"),
])
def test_camera_info_refuses_unset_and_implausible_values(k: list[float], width: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        camera_info_to_intrinsics(camera_info(k, width=width))


def test_transform_and_stamp_round_trips(shared_data: Path) -> None:
    sample = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c", load_images=False)
    pose = sample.key_ego2global
    msg = matrix_to_transform(pose, "map", "base_link", sample.stamp_ns)
    assert msg.header.frame_id == "map" and msg.child_frame_id == "base_link"
    assert stamp_to_ns(msg.header.stamp) == sample.stamp_ns == 1_532_402_927_612_460_000
    # the stored pose is orthonormal to ~1e-8 only (9 printed decimals), so its quaternion round trip is too
    assert transform_to_matrix(msg) == pytest.approx(pose, abs=1e-7)
    assert np.array_equal(transform_to_matrix(msg.transform), transform_to_matrix(msg))
    stamp = ns_to_stamp(1_532_402_927_612_460_123)
    assert (stamp.sec, stamp.nanosec) == (1_532_402_927, 612_460_123)
    with pytest.raises(ValueError, match="stamp_ns: -1 does not fit"):
        ns_to_stamp(-1)
    msg.transform.rotation.w = msg.transform.rotation.x = msg.transform.rotation.y = msg.transform.rotation.z = 0.0
    with pytest.raises(ValueError, match="norm 0 is not 1"):
        transform_to_matrix(msg)
