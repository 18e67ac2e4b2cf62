"""Ego poses from a bag's tf for the recorded grids: exact at a message's stamp, interpolated across short gaps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gsdocc_ros.io.bag_poses import BagPoses
from gsdocc_ros.io.bags import bag_typestore


T0 = 1_532_402_927_612_460_000


def write_tf_bag(path: Path, poses: dict[int, tuple[tuple[float, float, float], float]]) -> Path:
    """A bag with map -> base_link at each stamp (translation, yaw in degrees) and base_link -> LIDAR_TOP static."""
    from rosbags.rosbag2 import Writer

    store = bag_typestore()
    t = store.types

    def edge(stamp: int, parent: str, child: str, xyz: tuple[float, float, float], yaw_deg: float) -> object:
        half = math.radians(yaw_deg) / 2
        return t["geometry_msgs/msg/TransformStamped"](
            header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                                  nanosec=stamp % 10**9),
                                            frame_id=parent),
            child_frame_id=child,
            transform=t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](*xyz),
                rotation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(half), w=math.cos(half))))

    tf_type = "tf2_msgs/msg/TFMessage"
    with Writer(path, version=Writer.VERSION_LATEST) as writer:
        static = writer.add_connection("/tf_static", tf_type, typestore=store)
        dynamic = writer.add_connection("/tf", tf_type, typestore=store)
        message = t[tf_type](transforms=[edge(T0, "base_link", "LIDAR_TOP", (0.94, 0.0, 1.84), 90.0)])
        writer.write(static, T0, store.serialize_cdr(message, tf_type))
        for stamp, (xyz, yaw) in sorted(poses.items()):
            message = t[tf_type](transforms=[edge(stamp, "map", "base_link", xyz, yaw),
                                             edge(stamp, "map", "elsewhere", (9.0, 9.0, 9.0), 0.0)])
            writer.write(dynamic, stamp, store.serialize_cdr(message, tf_type))
    return path


def yaw_of(matrix: np.ndarray) -> float:
    return math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))


def test_poses_exact_interpolated_or_none(tmp_path: Path) -> None:
    bag = write_tf_bag(tmp_path / "bag", {T0: ((100.0, 200.0, 0.0), 10.0), T0 + 50_000_000: ((101.0, 200.5, 0.0), 14.0),
                                          T0 + 500_000_000: ((110.0, 205.0, 0.0), 30.0)})
    poses = BagPoses.from_bag(bag)
    assert len(poses) == 3 and poses.ego_frame == "base_link"
    np.testing.assert_allclose(poses.lidar_to_ego[:3, 3], [0.94, 0.0, 1.84])
    np.testing.assert_allclose(poses.lidar_to_ego[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    exact = poses.lookup(T0 + 50_000_000)
    assert exact[:3, 3].tolist() == [101.0, 200.5, 0.0] and yaw_of(exact) == pytest.approx(14.0)
    middle = poses.lookup(T0 + 12_500_000)  # a quarter of the way
    np.testing.assert_allclose(middle[:3, 3], [100.25, 200.125, 0.0], atol=1e-9)
    assert yaw_of(middle) == pytest.approx(11.0, abs=1e-3)
    assert poses.lookup(T0 + 100_000_000) is None  # inside a 450 ms gap
    assert poses.lookup(T0 - 1) is None and poses.lookup(T0 + 600_000_000) is None
