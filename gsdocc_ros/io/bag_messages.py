"""The bags this package writes: topic names and types, messages built from values or nuScenes records, write order.

Shared by the nuScenes converter, the synthetic scene of `gsdocc demo` and the tests, so that every bag carries the
same topics (the node's defaults), frames (REP-105 map -> base_link -> sensors) and latched calibration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin
from tqdm import tqdm

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bags import DEFAULT_DISTRO, RosDistro, bag_typestore, bag_writer
from gsdocc_ros.pipeline.frames import CAMERA_NAMES


LIDAR_CHANNEL = "LIDAR_TOP"


MAP_FRAME = "map"


EGO_FRAME = "base_link"


TF_TOPIC = "/tf"


TF_STATIC_TOPIC = "/tf_static"


SCENE_TOPIC = "/gsdocc/scene"


SAMPLE_TOKEN_TOPIC = "/gsdocc/sample_token"


LIDAR_TOPIC = f"/{LIDAR_CHANNEL}"


LIDAR_FIELDS: tuple[str, ...] = ("x", "y", "z", "intensity", "ring")
"""Float32 fields of each point of a nuScenes .pcd.bin file, in file order."""


STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


TF_TYPE = "tf2_msgs/msg/TFMessage"


STRING_TYPE = "std_msgs/msg/String"


IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"


INFO_TYPE = "sensor_msgs/msg/CameraInfo"


CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"


def image_topic(channel: str) -> str:
    """Compressed-image topic of a camera channel (the node's default image_topic_format)."""
    return f"/{channel}/image_rect_compressed"


def camera_info_topic(channel: str) -> str:
    """CameraInfo topic of a camera channel (the node's default camera_info_topic_format)."""
    return f"/{channel}/camera_info"


class Rank(IntEnum):
    """Write order of messages sharing one bag time: latched calibration and poses come before the data."""

    TF_STATIC = 0
    SCENE = 1
    TF = 2
    SAMPLE_TOKEN = 3
    CAMERA_INFO = 4
    DATA = 5


@dataclass(frozen=True)
class Event:
    """One message to write: bag time, order among equal times, topic, and a builder of the message."""

    stamp_ns: int
    rank: Rank
    seq: int
    """Planning order, the last tie-breaker (keeps the plan deterministic)."""
    topic: str
    build: Callable[[], Any]
    """Returns the rosbags message; called at write time so file contents are read one at a time."""


def write_order(events: Sequence[Event]) -> list[Event]:
    """``events`` in write order: bag time, then rank, then planning order."""
    return sorted(events, key=lambda e: (e.stamp_ns, e.rank, e.seq))


def _qos(durability: QosDurability, depth: int) -> Qos:
    """A reliable keep-last QoS profile as rosbags records it in the bag's metadata."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


def us_to_ns(timestamp_us: int) -> int:
    """A nuScenes microsecond timestamp in nanoseconds."""
    return int(timestamp_us) * 1000


class MessageFactory:
    """Builds the rosbags messages of the bag from nuScenes records (type store classes, exact values).

    ``dataroot`` resolves the records' file names; without it only the builders that take values and bytes
    (header ... compressed_image, pinhole_info) are usable, as for the synthetic bag of `gsdocc demo`. The
    message classes are those of ``distro``'s type store.
    """

    def __init__(self, dataroot: Path | None = None, distro: RosDistro = DEFAULT_DISTRO) -> None:
        self.dataroot = dataroot
        self.store = bag_typestore(distro)
        self.types = self.store.types

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """std_msgs/Header at ``stamp_ns``."""
        time = self.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return self.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def transform(self, stamp_ns: int, parent: str, child: str, translation: Sequence[float],
                  rotation_wxyz: Sequence[float]) -> Any:
        """geometry_msgs/TransformStamped parent -> child from a nuScenes translation and (w, x, y, z) rotation."""
        t = self.types
        w, x, y, z = (float(v) for v in rotation_wxyz)
        return t["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp_ns, parent),
            child_frame_id=child,
            transform=t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](*(float(v) for v in translation)),
                rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
            ),
        )

    def tf_message(self, transforms: list[Any]) -> Any:
        """tf2_msgs/TFMessage of ``transforms``."""
        return self.types[TF_TYPE](transforms=transforms)

    def string(self, data: str) -> Any:
        """std_msgs/String."""
        return self.types[STRING_TYPE](data=data)

    def read(self, filename: str) -> bytes:
        """Bytes of a dataset file, ToolError naming it when it cannot be read."""
        path = self.dataroot / filename
        try:
            return path.read_bytes()
        except OSError as error:
            raise ToolError(f"cannot read {path}: {error.strerror}") from None

    def compressed_image(self, stamp_ns: int, frame_id: str, data: bytes, fmt: str) -> Any:
        """sensor_msgs/CompressedImage holding the encoded bytes ``data`` unchanged (``fmt``: jpeg, png)."""
        return self.types[IMAGE_TYPE](header=self.header(stamp_ns, frame_id), format=fmt,
                                      data=np.frombuffer(data, dtype=np.uint8))

    def image(self, record: dict, channel: str) -> Any:
        """sensor_msgs/CompressedImage holding the sample_data's file bytes unchanged."""
        fmt = "jpeg" if record["fileformat"].lower() in ("jpg", "jpeg") else record["fileformat"].lower()
        return self.compressed_image(us_to_ns(record["timestamp"]), channel, self.read(record["filename"]), fmt)

    def pinhole_info(self, stamp_ns: int, frame_id: str, intrinsic: Sequence[Sequence[float]], height: int,
                     width: int) -> Any:
        """sensor_msgs/CameraInfo of a rectified pinhole image: K, R = I, P = [K | 0], zero plumb_bob D."""
        k = np.asarray(intrinsic, dtype=np.float64)  # (3, 3)
        p = np.concatenate([k, np.zeros((3, 1))], axis=1)  # (3, 4)
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                               do_rectify=False)
        return self.types[INFO_TYPE](
            header=self.header(stamp_ns, frame_id), height=int(height), width=int(width),
            distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(9), r=np.eye(3).reshape(9), p=p.reshape(12),
            binning_x=0, binning_y=0, roi=roi,
        )

    def camera_info(self, record: dict, channel: str, intrinsic: Sequence[Sequence[float]]) -> Any:
        """sensor_msgs/CameraInfo of a rectified nuScenes image (see pinhole_info)."""
        return self.pinhole_info(us_to_ns(record["timestamp"]), channel, intrinsic, record["height"],
                                 record["width"])

    def point_cloud(self, record: dict) -> Any:
        """sensor_msgs/PointCloud2 of a LiDAR .pcd.bin (float32 x, y, z, intensity, ring per point), bytes unchanged."""
        raw = self.read(record["filename"])
        point_step = 4 * len(LIDAR_FIELDS)
        if len(raw) % point_step:
            raise ToolError(f"{self.dataroot / record['filename']}: {len(raw)} bytes is not a whole number of "
                            f"{point_step}-byte points (x, y, z, intensity, ring float32)")
        field = self.types["sensor_msgs/msg/PointField"]
        fields = [field(name=name, offset=4 * i, datatype=field.FLOAT32, count=1) for i, name in enumerate(LIDAR_FIELDS)]
        count = len(raw) // point_step
        return self.types[CLOUD_TYPE](
            header=self.header(us_to_ns(record["timestamp"]), LIDAR_CHANNEL), height=1, width=count,
            fields=fields, is_bigendian=False, point_step=point_step, row_step=point_step * count,
            data=np.frombuffer(raw, dtype=np.uint8), is_dense=True,
        )


TOPIC_TYPES: dict[str, str] = {
    TF_STATIC_TOPIC: TF_TYPE, TF_TOPIC: TF_TYPE, SCENE_TOPIC: STRING_TYPE, SAMPLE_TOKEN_TOPIC: STRING_TYPE,
    LIDAR_TOPIC: CLOUD_TYPE,
    **{image_topic(ch): IMAGE_TYPE for ch in CAMERA_NAMES}, **{camera_info_topic(ch): INFO_TYPE for ch in CAMERA_NAMES},
}
"""Message type of every topic the converter can write."""


def write_bag(path: Path, events: Sequence[Event], storage: StoragePlugin, custom: dict[str, str],
              progress: bool = True, distro: RosDistro = DEFAULT_DISTRO) -> Counter:
    """Write ``events`` (already ordered) as a new bag at ``path`` in ``distro``'s format; messages per topic."""
    store = bag_typestore(distro)
    counts: Counter = Counter()
    with bag_writer(path, distro, storage) as writer:
        for key, value in custom.items():
            writer.set_custom_data(key, value)
        connections = {}
        for topic in dict.fromkeys(e.topic for e in events):
            latched = topic == TF_STATIC_TOPIC
            qos = _qos(QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE, 1 if latched else 10)
            connections[topic] = writer.add_connection(topic, TOPIC_TYPES[topic], typestore=store,
                                                       offered_qos_profiles=[qos])
        for event in tqdm(events, desc="writing", unit="msg", disable=not progress):
            data = store.serialize_cdr(event.build(), TOPIC_TYPES[event.topic])
            writer.write(connections[event.topic], event.stamp_ns, data)
            counts[event.topic] += 1
    return counts


