"""QoS overrides: the standard qos_overrides parameters reach the camera, camera-info and output topics."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by scripts/setup.sh")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage  # noqa: E402

from gsdocc_ros.ros.node import OccupancyNode  # noqa: E402

from ros_feeder import SampleFeeder, spin_until  # noqa: E402

RELIABLE_ONLY = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
OVERRIDES = {
    "qos_overrides./CAM_FRONT/image_rect_compressed.subscription.reliability": "reliable",
    "qos_overrides./CAM_FRONT/image_rect_compressed.subscription.depth": 3,
    "qos_overrides./CAM_FRONT/camera_info.subscription.reliability": "reliable",
    "qos_overrides./CAM_FRONT/camera_info.subscription.durability": "transient_local",
    "qos_overrides./gsdocc/occupancy.publisher.reliability": "best_effort",
}


@pytest.fixture
def ros(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """rclpy on a fresh domain, shared memory only."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "SHM")
    rclpy.init()
    yield
    rclpy.shutdown()


def qos_of(node: rclpy.node.Node, topic: str) -> QoSProfile:
    """The QoS ``node`` created its subscription or publisher on ``topic`` with (overrides applied)."""
    return next(e.qos_profile for e in (*node.subscriptions, *node.publishers) if e.topic_name == topic)


def test_overrides_reach_cameras_camera_info_and_outputs(ros: None, shared_data: Path) -> None:
    tester = rclpy.create_node("tester")
    scene = shared_data / "nuscenes_sample" / "scene-0061_ca9a282c"
    feed = SampleFeeder(tester, scene)
    latched = {name: tester.create_publisher(CameraInfo, f"/{name}/camera_info", LATCHED)
               for name in ("CAM_FRONT", "CAM_BACK")}
    for name, publisher in latched.items():  # published once, before the node exists, as many drivers do
        publisher.publish(feed.camera_info(name, 0))
    node = OccupancyNode(parameter_overrides=[
        Parameter("device", value="cpu"), Parameter("allow_random_weights", value=True),
        Parameter("input_height", value=64), Parameter("input_width", value=192),
        *(Parameter(name, value=value) for name, value in OVERRIDES.items())])
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(tester)
    try:
        camera = tester.create_publisher(CompressedImage, "/CAM_FRONT/image_rect_compressed", RELIABLE_ONLY)
        assert spin_until(executor, lambda: camera.get_subscription_count() > 0, 10.0)
        front = qos_of(node, "/CAM_FRONT/image_rect_compressed")
        assert front.reliability == ReliabilityPolicy.RELIABLE and front.depth == 3
        back = qos_of(node, "/CAM_BACK/image_rect_compressed")
        assert back.reliability == ReliabilityPolicy.BEST_EFFORT and back.depth == 5  # sensor data unless overridden
        assert qos_of(node, "/gsdocc/occupancy").reliability == ReliabilityPolicy.BEST_EFFORT
        assert qos_of(node, "/gsdocc/markers").reliability == ReliabilityPolicy.RELIABLE

        before = node.sync.counters()["messages_in"]
        for offset in range(3):
            camera.publish(feed.image("CAM_FRONT", feed.camera_stamps(offset * 10**8)["CAM_FRONT"]))
        assert spin_until(executor, lambda: node.sync.counters()["messages_in"] == before + 3, 10.0), \
            "the reliable-only camera was not received"
        # the latched CameraInfo reaches only the subscription overridden to transient_local
        assert spin_until(executor, lambda: "CAM_FRONT" in node._camera_info, 10.0)
        assert "CAM_BACK" not in node._camera_info
        assert node.get_parameter("qos_overrides./CAM_FRONT/camera_info.subscription.durability").value == \
            "transient_local"
    finally:
        executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
        tester.destroy_node()


def test_node_reads_overrides_from_a_params_file(ros: None, tmp_path: Path) -> None:
    """The same parameters from a --params-file, nested as ROS writes them, reach the output publisher."""
    params = tmp_path / "qos.yaml"
    params.write_text("/**:\n  ros__parameters:\n    qos_overrides:\n      /gsdocc/markers:\n        publisher:\n"
                      "          reliability: best_effort\n          depth: 4\n")
    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(params)])
    try:
        node = OccupancyNode(context=context, parameter_overrides=[
            Parameter("device", value="cpu"), Parameter("allow_random_weights", value=True),
            Parameter("input_height", value=64), Parameter("input_width", value=192)])
        try:
            markers = qos_of(node, "/gsdocc/markers")
            assert markers.reliability == ReliabilityPolicy.BEST_EFFORT and markers.depth == 4
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
