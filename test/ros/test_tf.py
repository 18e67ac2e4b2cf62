"""tf on whichever buffer imports (genuine tf2_ros or the fallback): interpolation, chaining through map, cache
limits, look-up errors and waits, the listener over the middleware, and the backend choice."""

from __future__ import annotations

import math
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import rclpy  # noqa: E402 (a missing rclpy is a broken install: fail, never skip)
from rclpy.duration import Duration  # noqa: E402
from rclpy.time import Time  # noqa: E402

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA, load_sample_frames  # noqa: E402
from gsdocc_ros.ros.tf import (  # noqa: E402
    Buffer, ConnectivityException, ExtrapolationException, LookupException, TfListener,
)
from gsdocc_ros.ros.conversions import matrix_to_transform, transform_to_matrix  # noqa: E402

S = 1_000_000_000


def yaw_pose(yaw_deg: float, x: float, y: float, z: float = 0.0) -> np.ndarray:
    """4x4 pose with a rotation about z."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = [x, y, z]
    return pose


def put(buffer: Buffer, parent: str, child: str, pose: np.ndarray, stamp_ns: int, static: bool = False) -> None:
    """Insert ``pose`` (parent <- child) at ``stamp_ns``."""
    msg = matrix_to_transform(pose, parent, child, stamp_ns)
    (buffer.set_transform_static if static else buffer.set_transform)(msg, "test")


def test_interpolates_linearly_and_by_slerp_between_two_stamps() -> None:
    buffer = Buffer()
    put(buffer, "map", "base_link", yaw_pose(0.0, 0.0, 0.0), 1 * S)
    put(buffer, "map", "base_link", yaw_pose(90.0, 10.0, 2.0, 1.0), 2 * S)
    out = buffer.lookup_transform("map", "base_link", Time(nanoseconds=S + S // 4))
    assert out.header.frame_id == "map" and out.child_frame_id == "base_link"
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (1, 250_000_000)
    t, q = out.transform.translation, out.transform.rotation
    assert (t.x, t.y, t.z) == pytest.approx((2.5, 0.5, 0.25), abs=1e-12)
    half = math.radians(22.5) / 2  # a quarter of the way from 0 to 90 degrees of yaw
    assert (q.x, q.y, q.z, q.w) == pytest.approx((0.0, 0.0, math.sin(half), math.cos(half)), abs=1e-12)
    # the inverse look-up is the inverse matrix
    back = buffer.lookup_transform("base_link", "map", Time(nanoseconds=S + S // 4))
    assert transform_to_matrix(back) @ transform_to_matrix(out) == pytest.approx(np.eye(4), abs=1e-12)


def test_real_nuscenes_cameras_chain_through_map_into_the_key_ego(shared_data: Path) -> None:
    """map -> base_link at every camera's own stamp + static base_link -> CAM_*: the model's camera -> key-ego."""
    sample = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c", load_images=False)
    buffer = Buffer()
    for name in CAMERA_NAMES:
        cam = sample.cameras[name]
        stamp = int(cam["timestamp_us"]) * 1000
        put(buffer, "map", "base_link", np.asarray(cam["ego2global"]), stamp)
        put(buffer, "base_link", name, np.asarray(cam["sensor2ego"]), 0, static=True)
    key_time = Time(nanoseconds=sample.stamp_ns)
    for frame in sample.frames:
        out = buffer.lookup_transform_full("base_link", key_time, frame.name, Time(nanoseconds=frame.stamp_ns), "map")
        assert transform_to_matrix(out) == pytest.approx(frame.cam_to_ego, abs=1e-6), frame.name
    # ego motion between two cameras' stamps: curr -> prev is inv(prev pose) @ curr pose
    prev, curr = sample.cameras["CAM_FRONT_LEFT"], sample.cameras["CAM_BACK_LEFT"]
    motion = buffer.lookup_transform_full("base_link", Time(nanoseconds=prev["timestamp_us"] * 1000), "base_link",
                                          Time(nanoseconds=curr["timestamp_us"] * 1000), "map")
    expected = np.linalg.inv(np.asarray(prev["ego2global"])) @ np.asarray(curr["ego2global"])
    assert transform_to_matrix(motion) == pytest.approx(expected, abs=1e-6)
    assert np.linalg.norm(expected[:3, 3]) > 0.3  # the ego really moved (about 9 m/s over 43 ms)
    # between the stamps the pose is interpolated, so a look-up there succeeds; outside it extrapolates
    middle = Time(nanoseconds=(prev["timestamp_us"] + curr["timestamp_us"]) * 500)
    assert buffer.can_transform("map", KEY_CAMERA, middle)
    assert not buffer.can_transform("map", KEY_CAMERA, Time(nanoseconds=curr["timestamp_us"] * 1000 + 10**8))


def test_extrapolation_beyond_the_cache_and_into_the_future() -> None:
    buffer = Buffer(cache_time=Duration(seconds=10))
    for second in range(21):
        put(buffer, "map", "base_link", yaw_pose(0.0, float(second), 0.0), second * S)
    assert buffer.lookup_transform("map", "base_link", Time(seconds=12)).transform.translation.x == 12.0
    # tf2 prunes before it inserts: after the sample at 20 s, the one at 9 s is still there (10 s behind 19 s)
    assert buffer.lookup_transform("map", "base_link", Time(seconds=9)).transform.translation.x == 9.0
    with pytest.raises(ExtrapolationException, match="into the past.*earliest data is at time 9.0"):
        buffer.lookup_transform("map", "base_link", Time(seconds=5))
    with pytest.raises(ExtrapolationException, match="into the future.*latest data is at time 20.0"):
        buffer.lookup_transform("map", "base_link", Time(seconds=25))


def test_latest_common_time_and_lookup_errors() -> None:
    buffer = Buffer()
    put(buffer, "map", "odom", yaw_pose(0.0, 1.0, 0.0), 1 * S)
    put(buffer, "map", "odom", yaw_pose(0.0, 3.0, 0.0), 3 * S)
    put(buffer, "odom", "base_link", yaw_pose(0.0, 0.0, 1.0), 1 * S)
    put(buffer, "odom", "base_link", yaw_pose(0.0, 0.0, 2.0), 2 * S)
    put(buffer, "base_link", "CAM_FRONT", yaw_pose(-90.0, 1.7, 0.0, 1.5), 0, static=True)
    latest = buffer.lookup_transform("map", "CAM_FRONT", Time())  # latest time both dynamic edges have: 2 s
    assert (latest.header.stamp.sec, latest.header.stamp.nanosec) == (2, 0)
    t = latest.transform.translation
    assert (t.x, t.y, t.z) == pytest.approx((2.0 + 1.7, 2.0, 1.5))
    with pytest.raises(LookupException, match='"nowhere" passed to lookup_transform argument source_frame'):
        buffer.lookup_transform("map", "nowhere", Time())
    put(buffer, "world", "other", np.eye(4), 1 * S)
    with pytest.raises(ConnectivityException, match="not part of the same tree"):
        buffer.lookup_transform("map", "other", Time(seconds=1))


def test_lookup_waits_for_data_up_to_its_timeout() -> None:
    buffer = Buffer()
    put(buffer, "map", "base_link", np.eye(4), 1 * S)
    late = threading.Timer(0.2, put, (buffer, "map", "base_link", yaw_pose(0.0, 2.0, 0.0), 2 * S))
    late.start()
    try:
        out = buffer.lookup_transform("map", "base_link", Time(seconds=2), timeout=Duration(seconds=20))
    finally:
        late.join()
    assert out.transform.translation.x == 2.0
    with pytest.raises(ExtrapolationException):
        buffer.lookup_transform("map", "base_link", Time(seconds=3), timeout=Duration(seconds=0.05))


PUBLISHER = r"""
import math, time
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from geometry_msgs.msg import TransformStamped
from tf2_msgs.msg import TFMessage

def tf(parent, child, sec, x, qz, qw):
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp.sec = sec
    msg.transform.translation.x = x
    msg.transform.rotation.z, msg.transform.rotation.w = qz, qw
    return msg

rclpy.init()
node = rclpy.create_node("tf_sender")
static_pub = node.create_publisher(TFMessage, "/tf_static", QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
static_pub.publish(TFMessage(transforms=[tf("base_link", "CAM_FRONT", 0, 1.5, 0.0, 1.0)]))
pub = node.create_publisher(TFMessage, "/tf", 100)
s = math.sin(math.radians(45)); c = math.cos(math.radians(45))
dynamic = TFMessage(transforms=[tf("map", "base_link", 10, 0.0, 0.0, 1.0), tf("map", "base_link", 11, 4.0, s, c),
                                tf("map", "broken", 10, 0.0, 0.0, float("nan"))])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    pub.publish(dynamic)
    rclpy.spin_once(node, timeout_sec=0.1)
node.destroy_node()
rclpy.shutdown()
"""


def test_listener_node_receives_tf_and_latched_tf_static_from_another_process(
        subprocess_env: dict[str, str], python: str) -> None:
    sender = subprocess.Popen([python, "-c", PUBLISHER], env=subprocess_env)
    rclpy.init()
    try:
        time.sleep(1.0)  # the static transform is published before this node exists: transient local must deliver it
        node = rclpy.create_node("tf_listener_test")
        buffer = Buffer()
        listener = TfListener(buffer, node)
        when = Time(seconds=10, nanoseconds=500_000_000)
        deadline = time.monotonic() + 30
        while not (buffer.can_transform("map", "CAM_FRONT", when) and listener.rejected) \
                and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        out = buffer.lookup_transform("map", "CAM_FRONT", when)
        listener.unregister()
        node.destroy_node()
    finally:
        rclpy.shutdown()
        sender.terminate()
        sender.wait(timeout=10)
    # halfway between yaw 0 at x=0 and yaw 90 at x=4: yaw 45 at x=2, then 1.5 m forward along that heading
    t = out.transform.translation
    assert (t.x, t.y) == pytest.approx((2.0 + 1.5 * math.cos(math.radians(45)), 1.5 * math.sin(math.radians(45))))
    assert out.transform.rotation.z == pytest.approx(math.sin(math.radians(22.5)))
    assert listener.rejected >= 1  # the NaN transform, counted, not stored
    with pytest.raises(LookupException):
        buffer.lookup_transform("map", "broken", when)


FAKE_TF2_ROS = '''
class TransformException(Exception): pass
class LookupException(TransformException): pass
class ConnectivityException(TransformException): pass
class ExtrapolationException(TransformException): pass
class InvalidArgumentException(TransformException): pass
class Buffer: pass
class TransformListener: pass
'''


@pytest.mark.parametrize(("force_fallback", "expected"), [("0", "tf2_ros"), ("1", "gsdocc fallback")])
def test_genuine_tf2_ros_is_preferred_unless_the_fallback_is_forced(
        tmp_path: Path, subprocess_env: dict[str, str], python: str, force_fallback: str, expected: str) -> None:
    (tmp_path / "tf2_ros.py").write_text(FAKE_TF2_ROS)  # stands in for an installed ROS 2 tf2_ros
    env = {**subprocess_env, "PYTHONPATH": f"{tmp_path}:{subprocess_env['PYTHONPATH']}",
           "GSDOCC_COMPAT_FALLBACK": force_fallback}
    probe = ("from gsdocc_ros.ros import tf; import tf2_ros; "
             "print(tf.BACKEND, tf.Buffer is tf2_ros.Buffer, tf.LookupException is tf2_ros.LookupException, sep='|')")
    out = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    genuine = str(expected == "tf2_ros")
    assert out.stdout.strip().split("|") == [expected, genuine, genuine]
