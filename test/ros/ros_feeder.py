"""Test helper: publishes a real nuScenes keyframe (images, CameraInfo, tf) the way a bag replay would."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, load_sample_frames
from gsdocc_ros.ros.conversions import matrix_to_transform, ns_to_stamp

LATCHED = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class SampleFeeder:
    """Publishes /CAM_*/image_rect_compressed (or raw), /CAM_*/camera_info, /tf and /tf_static of a sample."""

    def __init__(self, node: Node, scene_dir: Path, raw: bool = False,
                 image_topic: str = "/{camera}/image_rect_compressed") -> None:
        self.node = node
        self.sample = load_sample_frames(scene_dir)
        self.raw = raw
        self.jpegs = {name: (scene_dir / self.sample.cameras[name]["image"]).read_bytes() for name in CAMERA_NAMES}
        kind = Image if raw else CompressedImage
        self.image_pubs = {name: node.create_publisher(kind, image_topic.format(camera=name), qos_profile_sensor_data)
                           for name in CAMERA_NAMES}
        self.info_pubs = {name: node.create_publisher(CameraInfo, f"/{name}/camera_info", qos_profile_sensor_data)
                          for name in CAMERA_NAMES}
        self.tf_pub = node.create_publisher(TFMessage, "/tf", 100)
        self.tf_static_pub = node.create_publisher(TFMessage, "/tf_static", LATCHED)

    def publish_static(self) -> None:
        """base_link -> CAM_* from the sample's calibration, latched."""
        transforms = [matrix_to_transform(np.asarray(self.sample.cameras[name]["sensor2ego"]), "base_link", name, 0)
                      for name in CAMERA_NAMES]
        self.tf_static_pub.publish(TFMessage(transforms=transforms))

    def camera_info(self, name: str, stamp_ns: int, k: np.ndarray | None = None,
                    size: tuple[int, int] = (1600, 900)) -> CameraInfo:
        msg = CameraInfo()
        msg.header.stamp, msg.header.frame_id = ns_to_stamp(stamp_ns), name
        msg.width, msg.height = size
        msg.k = [float(v) for v in np.ravel(self.sample.cameras[name]["intrinsics"] if k is None else k)]
        msg.p = [msg.k[0], msg.k[1], msg.k[2], 0.0, msg.k[3], msg.k[4], msg.k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        msg.distortion_model = "plumb_bob"
        return msg

    def image(self, name: str, stamp_ns: int) -> Image | CompressedImage:
        if self.raw:
            msg = Image(height=900, width=1600, encoding="rgb8", step=1600 * 3)
            frame = next(f for f in self.sample.frames if f.name == name)
            msg.data = frame.image.tobytes()
        else:
            msg = CompressedImage(format="jpeg")
            msg.data = self.jpegs[name]
        msg.header.stamp, msg.header.frame_id = ns_to_stamp(stamp_ns), name
        return msg

    def camera_stamps(self, offset_ns: int = 0) -> dict[str, int]:
        """Each camera's real stamp of the sample, shifted by ``offset_ns``."""
        return {name: int(self.sample.cameras[name]["timestamp_us"]) * 1000 + offset_ns for name in CAMERA_NAMES}

    def publish_tf(self, stamps_and_poses: Sequence[tuple[int, np.ndarray]]) -> None:
        """map -> base_link at each (stamp, ego2global)."""
        self.tf_pub.publish(TFMessage(transforms=[matrix_to_transform(pose, "map", "base_link", stamp)
                                                  for stamp, pose in stamps_and_poses]))

    def publish_set(self, offset_ns: int = 0, poses: dict[str, np.ndarray] | None = None,
                    cameras: Sequence[str] = CAMERA_NAMES, tf: bool = True,
                    image: Callable[[str, int], Image | CompressedImage] | None = None,
                    info: Callable[[str, int], CameraInfo] | None = None) -> int:
        """One camera set (tf first, as a correct bag has it); returns the CAM_FRONT stamp."""
        stamps = self.camera_stamps(offset_ns)
        poses = poses or {name: np.asarray(self.sample.cameras[name]["ego2global"]) for name in CAMERA_NAMES}
        if tf:
            self.publish_tf([(stamps[name], poses[name]) for name in CAMERA_NAMES])
        for name in CAMERA_NAMES:
            self.info_pubs[name].publish((info or self.camera_info)(name, stamps[name]))
        for name in cameras:
            self.image_pubs[name].publish((image or self.image)(name, stamps[name]))
        return stamps["CAM_FRONT"]


def spin_until(executor: Executor, condition: Callable[[], bool], timeout_s: float) -> bool:
    """Spin ``executor`` until ``condition()`` holds or ``timeout_s`` passes; returns the condition."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return condition()


def wait_for_subscribers(executor: Executor, publishers: Sequence[rclpy.publisher.Publisher], timeout_s: float = 10.0
                         ) -> None:
    """Block until every publisher sees a subscriber (discovery done)."""
    assert spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in publishers), timeout_s), \
        "the node's subscriptions were not discovered"
