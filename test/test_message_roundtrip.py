"""A SemanticVoxelGrid crosses the real middleware between two processes unchanged."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import rclpy  # noqa: E402 (a missing rclpy is a broken install: fail, never skip)
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from gsdocc_ros.msg import SemanticVoxelGrid  # noqa: E402

PUBLISHER = r"""
import sys, time
import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from gsdocc_ros.msg import SemanticVoxelGrid

out = sys.argv[1]
rng = np.random.default_rng(7)
labels = rng.integers(0, 18, size=(200, 200, 16), dtype=np.uint8)
confidence = rng.integers(0, 256, size=labels.shape, dtype=np.uint8)
msg = SemanticVoxelGrid()
msg.header.frame_id = "base_link"
msg.header.stamp.sec, msg.header.stamp.nanosec = 1532402927, 612460000
msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = -40.0, -40.0, -1.0
msg.origin.orientation.w = 1.0
msg.voxel_size = 0.4
msg.size_x, msg.size_y, msg.size_z = labels.shape
msg.labels = labels.tobytes()
msg.confidence = confidence.tobytes()
msg.class_names = [f"class_{i}" for i in range(18)]
msg.free_index = 17
msg.source = "roundtrip-test"
np.savez(out, labels=labels, confidence=confidence)
rclpy.init()
node = rclpy.create_node("grid_sender")
qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
pub = node.create_publisher(SemanticVoxelGrid, "grid", qos)
pub.publish(msg)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
node.destroy_node()
rclpy.shutdown()
"""


def test_grid_crosses_processes_byte_for_byte(tmp_path: Path, subprocess_env: dict[str, str], python: str) -> None:
    sent = tmp_path / "sent.npz"
    sender = subprocess.Popen([python, "-c", PUBLISHER, str(sent)], env=subprocess_env)
    received: list[SemanticVoxelGrid] = []
    rclpy.init()
    try:
        node = rclpy.create_node("grid_receiver")
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(SemanticVoxelGrid, "grid", received.append, qos)
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        sender.terminate()
        sender.wait(timeout=10)
    assert received, "no SemanticVoxelGrid arrived within 30 s"
    msg = received[0]
    expected = np.load(sent)
    assert (msg.size_x, msg.size_y, msg.size_z) == (200, 200, 16)
    assert bytes(msg.labels) == expected["labels"].tobytes()
    assert bytes(msg.confidence) == expected["confidence"].tobytes()
    assert msg.header.frame_id == "base_link"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1532402927, 612460000)
    assert msg.origin.position.x == -40.0 and msg.voxel_size == pytest.approx(0.4)
    assert list(msg.class_names) == [f"class_{i}" for i in range(18)] and msg.free_index == 17
    assert msg.source == "roundtrip-test" and len(msg.camera_mask) == 0
