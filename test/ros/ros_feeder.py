"""Test helpers: publish a real nuScenes keyframe (images, CameraInfo, tf) the way a bag replay would, and run the
node under test beside a tester node on one executor (NodeHarness)."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, load_sample_frames
from gsdocc_ros.ros.conversions import matrix_to_transform, ns_to_stamp, stamp_to_ns
from gsdocc_ros.ros.params import topic_for

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
        self.image_pubs = {name: node.create_publisher(kind, topic_for(image_topic, name), qos_profile_sensor_data)
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


class NodeHarness:
    """An OccupancyNode with ``parameters`` beside a tester node (a SampleFeeder, grid and /diagnostics listeners)
    on one executor, and the shared stamp timeline: offsets from the sample's stamps, advanced in 0.5 s steps."""

    STEP_NS = 500_000_000
    """One keyframe step: consecutive sets on the timeline are inferred (keyframe cadence)."""

    def __init__(self, scene_dir: Path, parameters: dict[str, Any], wait_s: float = 300.0) -> None:
        from gsdocc_ros.msg import SemanticVoxelGrid
        from gsdocc_ros.ros.node import OccupancyNode

        self.wait_s = wait_s
        self.node = OccupancyNode(parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        self.tester = rclpy.create_node("tester")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.feed = SampleFeeder(self.tester, scene_dir)
        self.grids: list[SemanticVoxelGrid] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.tester.create_subscription(SemanticVoxelGrid, "/gsdocc/occupancy", self.grids.append, 10)
        self.tester.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 100)
        self.offset_ns = 0
        wait_for_subscribers(self.executor, list(self.feed.image_pubs.values()) + [self.feed.tf_pub])
        self.feed.publish_static()

    def next_offset(self, steps: int = 1) -> int:
        """Advance the timeline by ``steps`` keyframe steps; returns the new offset."""
        self.offset_ns += steps * self.STEP_NS
        return self.offset_ns

    def spin_until(self, condition: Callable[[], bool], timeout_s: float | None = None) -> bool:
        """spin_until on this harness's executor (default timeout: one inference's worth, ``wait_s``)."""
        return spin_until(self.executor, condition, self.wait_s if timeout_s is None else timeout_s)

    def wait_grid(self, stamp_ns: int, before: int) -> SemanticVoxelGrid:
        """The first grid after the ``before``-th; it must carry ``stamp_ns``."""
        assert self.spin_until(lambda: len(self.grids) > before), \
            f"no grid for the set at {stamp_ns}; counters {dict(self.node.counters)}"
        grid = self.grids[before]
        assert stamp_to_ns(grid.header.stamp) == stamp_ns, "the grid is not of the newest set"
        return grid

    def publish_and_wait_grid(self, **kwargs: Any) -> SemanticVoxelGrid:
        """Publish one set (SampleFeeder.publish_set keywords) on the next step and wait for its grid."""
        before = len(self.grids)
        return self.wait_grid(self.feed.publish_set(self.next_offset(), **kwargs), before)

    def diagnostic_statuses(self, start: int = 0) -> list[DiagnosticStatus]:
        """The node's statuses among the /diagnostics messages received from the ``start``-th on."""
        name = self.node.get_fully_qualified_name()
        return [status for array in self.diagnostics[start:] for status in array.status if status.name == name]

    def wait_diagnostics(self, condition: Callable[[dict[str, str]], bool], start: int = 0) -> DiagnosticStatus:
        """The first status (from the ``start``-th message on) whose values satisfy ``condition``."""
        def found() -> DiagnosticStatus | None:
            statuses = self.diagnostic_statuses(start)
            return next((s for s in statuses if condition({kv.key: kv.value for kv in s.values})), None)

        assert self.spin_until(lambda: found() is not None, 30.0), \
            f"no /diagnostics report as expected; counters {dict(self.node.counters)}"
        status = found()
        assert status is not None
        return status

    def close(self) -> None:
        self.node.destroy_node()
        self.tester.destroy_node()


@contextlib.contextmanager
def node_session(scene_dir: Path, parameters: dict[str, Any],
                 harness_class: Callable[..., NodeHarness] = NodeHarness) -> Iterator[NodeHarness]:
    """rclpy on a fresh random ROS_DOMAIN_ID (shared memory only) around one ``harness_class`` (NodeHarness or a
    subclass taking the same scene_dir and parameters); restores the domain."""
    previous = {name: os.environ.get(name) for name in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS")}
    os.environ["ROS_DOMAIN_ID"] = str(random.randint(1, 200))
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "SHM"
    rclpy.init()
    harness = None
    try:
        harness = harness_class(scene_dir, parameters)
        yield harness
    finally:
        if harness is not None:
            harness.close()
        rclpy.shutdown()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
