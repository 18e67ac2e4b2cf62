"""Ego poses and the LiDAR mounting from a bag's tf, saved by `gsdocc record` with each grid for its RayIoU origins.

The ego pose of a grid is ``fixed -> ego`` on /tf at the grid's stamp: the message at exactly that stamp when
there is one (`gsdocc nuscenes-to-bag` writes one at every image stamp), otherwise interpolated between the
two nearest messages when they are at most ``MAX_GAP_NS`` apart (translation linearly, rotation by normalised
linear interpolation of the quaternions). The mounting is ``ego -> lidar`` on /tf_static (the last one).
Single tf edges only: a fixed frame reached through odom is not chained.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import TF_STATIC_TOPIC, TF_TOPIC
from gsdocc_ros.io.bags import bag_typestore, open_bag
from gsdocc_ros.pipeline.geometry import make_transform, quaternion_to_matrix

MAX_GAP_NS = 100_000_000
"""Widest gap between two /tf messages that a grid's stamp may be interpolated across."""


def _parts(transform: object) -> tuple[np.ndarray, np.ndarray]:
    """(translation (3,), quaternion xyzw (4,)) of a deserialised geometry_msgs/Transform."""
    t, q = transform.translation, transform.rotation
    return np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w])


def _matrix(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """float64 (4, 4) of a translation and a quaternion (ValueError from geometry when it is not near unit norm)."""
    return make_transform(quaternion_to_matrix(quaternion), translation)


class BagPoses:
    """``fixed -> ego`` transforms of a bag's /tf by stamp, and its ``ego -> lidar`` mounting."""

    def __init__(self, stamps: list[int], transforms: list[tuple[np.ndarray, np.ndarray]],
                 lidar_to_ego: np.ndarray | None, ego_frame: str) -> None:
        order = np.argsort(stamps, kind="stable")
        self._stamps = [stamps[i] for i in order]
        self._transforms = [transforms[i] for i in order]
        self.lidar_to_ego = lidar_to_ego
        """float64 (4, 4) LiDAR -> ego, or None when /tf_static has no such edge."""
        self.ego_frame = ego_frame

    def __len__(self) -> int:
        return len(self._stamps)

    @classmethod
    def from_bag(cls, bag: Path, fixed_frame: str = "map", ego_frame: str = "base_link",
                 lidar_frame: str = "LIDAR_TOP") -> BagPoses:
        """Read every /tf edge ``fixed_frame -> ego_frame`` and the /tf_static edge ``ego_frame -> lidar_frame``."""
        store = bag_typestore()
        stamps, transforms, lidar_to_ego = [], [], None
        reader = open_bag(bag)
        try:
            connections = [c for c in reader.connections if c.topic in (TF_TOPIC, TF_STATIC_TOPIC)]
            for connection, _, raw in reader.messages(connections=connections) if connections else ():  # [] reads all
                for edge in store.deserialize_cdr(raw, connection.msgtype).transforms:
                    parent, child = edge.header.frame_id.lstrip("/"), edge.child_frame_id.lstrip("/")
                    if connection.topic == TF_TOPIC and (parent, child) == (fixed_frame, ego_frame):
                        stamps.append(edge.header.stamp.sec * 1_000_000_000 + edge.header.stamp.nanosec)
                        transforms.append(_parts(edge.transform))
                    elif connection.topic == TF_STATIC_TOPIC and (parent, child) == (ego_frame, lidar_frame):
                        lidar_to_ego = _matrix(*_parts(edge.transform))
        except (ValueError, KeyError) as error:
            raise ToolError(f"bag {bag}: cannot read {TF_TOPIC} ({type(error).__name__}: {error})") from None
        finally:
            reader.close()
        return cls(stamps, transforms, lidar_to_ego, ego_frame)

    def lookup(self, stamp_ns: int) -> np.ndarray | None:
        """float64 (4, 4) ego -> fixed at ``stamp_ns`` (exact, or interpolated across a short gap); None otherwise."""
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            return _matrix(*self._transforms[i])
        if i == 0 or i == len(self._stamps) or self._stamps[i] - self._stamps[i - 1] > MAX_GAP_NS:
            return None
        weight = (stamp_ns - self._stamps[i - 1]) / (self._stamps[i] - self._stamps[i - 1])
        (t0, q0), (t1, q1) = self._transforms[i - 1:i + 1]
        q = (1 - weight) * q0 + weight * (q1 if q0 @ q1 >= 0 else -q1)  # the shorter way round
        return _matrix((1 - weight) * t0 + weight * t1, q / np.linalg.norm(q))
