"""~/occupied_points: the real Occ3D grid as a PointCloud2, decoded by our reader and by struct here, byte for byte."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is installed by scripts/setup.sh")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from gsdocc_ros.pipeline.grid import FREE_INDEX, OCC3D_COLORS, OccupancyGrid  # noqa: E402
from gsdocc_ros.ros import point_cloud  # noqa: E402
from gsdocc_ros.ros.point_cloud import FIELDS, build_point_cloud, fallback_create_cloud, occupied_points  # noqa: E402

STAMP_NS = 1_532_402_927_612_460_000
STRUCT_CODES = {PointField.FLOAT32: "f", PointField.UINT8: "B", PointField.UINT32: "I"}
"""struct code of each datatype the cloud uses (sensor_msgs/PointField constants)."""


@pytest.fixture(scope="module")
def grid(shared_data: Path) -> OccupancyGrid:
    """The real Occ3D ground truth (39,092 occupied voxels) with a confidence made from its camera mask."""
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as data:
        labels, mask = data["semantics"], data["mask_camera"]
    confidence = (mask * 200 + np.arange(mask.size).reshape(mask.shape) % 50).astype(np.uint8)
    return OccupancyGrid(labels=labels, stamp_ns=STAMP_NS, confidence=confidence)


def decode_with_struct(cloud: PointCloud2) -> list[dict[str, float | int]]:
    """Every point as {field: value}, read one field at a time with struct at the offsets the message declares."""
    order = ">" if cloud.is_bigendian else "<"
    data = bytes(cloud.data)
    points = []
    for i in range(cloud.width * cloud.height):
        base = i * cloud.point_step
        points.append({f.name: struct.unpack_from(order + STRUCT_CODES[f.datatype], data, base + f.offset)[0]
                       for f in cloud.fields})
    return points


def test_cloud_holds_exactly_the_occupied_voxels(grid: OccupancyGrid) -> None:
    cloud = deserialize_message(serialize_message(build_point_cloud(grid, "base_link")), PointCloud2)
    assert cloud.header.frame_id == "base_link"
    assert cloud.header.stamp.sec * 10**9 + cloud.header.stamp.nanosec == STAMP_NS
    assert cloud.width == 39_092 == int((grid.labels != FREE_INDEX).sum())
    geometry = grid.geometry
    voxels = set()
    for p in decode_with_struct(cloud):
        index = tuple(int(np.floor((p[a] - o) / geometry.voxel_size)) for a, o in zip("xyz", geometry.origin))
        assert grid.labels[index] == p["label"] != FREE_INDEX
        assert grid.confidence[index] == p["confidence"]
        bits = struct.unpack("<I", struct.pack("<f", p["rgb"]))[0]
        assert [(bits >> 16) & 255, (bits >> 8) & 255, bits & 255] == OCC3D_COLORS[p["label"]].tolist()
        centre = np.array(geometry.origin) + (np.array(index) + 0.5) * geometry.voxel_size
        assert np.allclose([p["x"], p["y"], p["z"]], centre, atol=1e-5)
        voxels.add(index)
    assert voxels == set(zip(*np.nonzero(grid.labels != FREE_INDEX)))


def test_our_reader_gives_the_same_points(grid: OccupancyGrid) -> None:
    cloud = build_point_cloud(grid, "base_link")
    points = point_cloud.read_points(cloud)
    expected = decode_with_struct(cloud)
    for name in ("x", "y", "z", "rgb", "label", "confidence"):
        np.testing.assert_array_equal(points[name], np.array([p[name] for p in expected], dtype=points[name].dtype))


def test_layout_follows_the_point_cloud2_rules(grid: OccupancyGrid) -> None:
    """The rules sensor_msgs_py's create_cloud follows: packed fields, one row, native order, not dense."""
    cloud = build_point_cloud(grid, "base_link")
    sizes = {PointField.FLOAT32: 4, PointField.UINT8: 1}
    assert cloud.point_step == max(f.offset + sizes[f.datatype] for f in cloud.fields) == 18
    assert cloud.height == 1 and cloud.row_step == cloud.point_step * cloud.width == len(cloud.data)
    assert cloud.is_bigendian == (sys.byteorder == "big") and cloud.is_dense is False
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == \
        [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1), ("label", 16, 2, 1),
         ("confidence", 17, 2, 1)]
    packed = b"".join(struct.pack("=ffffBB", *(p[n] for n in ("x", "y", "z", "rgb", "label", "confidence")))
                      for p in decode_with_struct(cloud)[:500])
    assert bytes(cloud.data)[:len(packed)] == packed


def test_fallback_is_byte_identical_to_the_genuine_packer(grid: OccupancyGrid) -> None:
    genuine = pytest.importorskip("sensor_msgs_py.point_cloud2", reason="sensor_msgs_py exists on full ROS 2 installs")
    header = Header(frame_id="base_link")
    points = occupied_points(grid)
    ours = fallback_create_cloud(header, list(FIELDS), points)
    theirs = genuine.create_cloud(header, list(FIELDS), points)
    assert serialize_message(ours) == serialize_message(theirs)


def test_all_free_grid_gives_an_empty_cloud_and_no_confidence_gives_zero(grid: OccupancyGrid) -> None:
    empty = build_point_cloud(OccupancyGrid(labels=np.full_like(grid.labels, FREE_INDEX), stamp_ns=1), "base_link")
    assert empty.width == 0 and len(empty.data) == 0 and empty.point_step == 18
    plain = build_point_cloud(OccupancyGrid(labels=grid.labels, stamp_ns=1), "base_link")
    assert not point_cloud.read_points(plain)["confidence"].any()


def test_a_dtype_that_does_not_match_the_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match the fields"):
        fallback_create_cloud(Header(), list(FIELDS), np.zeros(3, dtype=[("x", "f4")]))
