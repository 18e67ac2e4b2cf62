"""The contract the node relies on from tf2_ros and message_filters, asserted on whichever backend imports.

Each test holds unchanged on a full ROS 2 install (genuine tf2_ros.Buffer, message_filters) and on the fallbacks
of a pip-only install; none depends on which is present (gsdocc_ros/ros/tf.py and sync.py state the contract and
where it comes from). Where the genuine behaviour would harm the node (a stale buffer after a bag loop, a raising
set callback), the tests check the node's own protection, TfListener and CameraSetSync, on the same backends.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import rclpy  # noqa: E402 (a missing rclpy is a broken install: fail, never skip)
from rclpy.duration import Duration  # noqa: E402
from rclpy.time import Time  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from gsdocc_ros.ros import sync, tf  # noqa: E402
from gsdocc_ros.ros.conversions import matrix_to_transform, ns_to_stamp, stamp_to_ns, transform_to_matrix  # noqa: E402

S = 1_000_000_000
MS = 1_000_000


def pose(x: float, y: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    """4x4 pose at (x, y) with a rotation about z."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    matrix = np.eye(4)
    matrix[:2, :2] = [[c, -s], [s, c]]
    matrix[:2, 3] = [x, y]
    return matrix


def put(buffer: object, matrix: np.ndarray, stamp_ns: int, child: str = "base_link") -> None:
    """Hand map <- child at ``stamp_ns`` to the buffer as the listener would."""
    buffer.set_transform(matrix_to_transform(matrix, "map", child, stamp_ns), "test")


def x_at(buffer: object, stamp_ns: int) -> float:
    """x of base_link in map at ``stamp_ns``."""
    return buffer.lookup_transform("map", "base_link", Time(nanoseconds=stamp_ns)).transform.translation.x


# ------------------------------------------------------------------------------------------------- tf buffer

def test_cache_time_keeps_one_older_sample_and_refuses_data_older_than_the_window() -> None:
    buffer = tf.Buffer(cache_time=Duration(seconds=10))
    for second in range(21):
        put(buffer, pose(float(second)), second * S)
    assert x_at(buffer, 9 * S) == 9.0  # pruned before the 20 s sample went in: 19 - 10 = 9 s stays
    with pytest.raises(tf.ExtrapolationException):
        x_at(buffer, 8 * S)
    put(buffer, pose(-50.0), 9 * S + S // 2)  # older than 20 - 10 s: TF_OLD_DATA, ignored without raising ...
    with pytest.raises(tf.ExtrapolationException):  # ... after pruning, which every insertion does first
        x_at(buffer, 9 * S + S // 2)
    assert x_at(buffer, 10 * S) == 10.0
    put(buffer, pose(-50.0), 15 * S + S // 2)  # inside the window though older than the newest: inserted
    assert x_at(buffer, 15 * S + S // 2) == -50.0


def test_quaternions_are_normalised_and_unusable_transforms_ignored() -> None:
    buffer = tf.Buffer()
    for stamp, norm in ((1 * S, 1.005), (2 * S, 2.0)):
        msg = matrix_to_transform(pose(float(stamp // S), yaw_deg=30.0), "map", "base_link", stamp)
        q = msg.transform.rotation
        q.x, q.y, q.z, q.w = (v * norm for v in (q.x, q.y, q.z, q.w))
        buffer.set_transform(msg, "test")
        out = buffer.lookup_transform("map", "base_link", Time(nanoseconds=stamp)).transform.rotation
        assert math.hypot(out.x, out.y, out.z, out.w) == pytest.approx(1.0, abs=1e-9)
        assert transform_to_matrix(buffer.lookup_transform("map", "base_link", Time(nanoseconds=stamp))) == \
            pytest.approx(pose(float(stamp // S), yaw_deg=30.0), abs=1e-9)
    nan = matrix_to_transform(pose(7.0), "map", "base_link", 3 * S)
    nan.transform.rotation.w = float("nan")
    buffer.set_transform(nan, "test")  # ignored (logged), never raised
    zero = matrix_to_transform(pose(7.0), "map", "base_link", 3 * S)
    zero.transform.rotation.w = 0.0
    buffer.set_transform(zero, "test")
    with pytest.raises(tf.ExtrapolationException):
        x_at(buffer, 3 * S)
    assert tf.transform_problem(nan) and tf.transform_problem(zero)


def test_clear_forgets_dynamic_history_and_keeps_static() -> None:
    buffer = tf.Buffer()
    buffer.set_transform_static(matrix_to_transform(pose(1.5), "base_link", "CAM_FRONT", 0), "test")
    put(buffer, pose(3.0), 5 * S)
    assert buffer.can_transform("map", "CAM_FRONT", Time(seconds=5))
    buffer.clear()
    assert not buffer.can_transform("map", "base_link", Time(seconds=5))
    assert buffer.lookup_transform("base_link", "CAM_FRONT", Time(seconds=123)).transform.translation.x == 1.5


# -------------------------------------------------------------------- the node's protection: bag loops in tf

class _Node:
    """The two things TfListener needs of a node, without a node: subscriptions are not made here."""

    def create_subscription(self, *args: object, **kwargs: object) -> None:
        return None

    def get_logger(self) -> object:
        return rclpy.logging.get_logger("test_contract")


def trajectory(listener: tf.TfListener, start_ns: int, end_ns: int, x0: float, y: float) -> None:
    """/tf messages at 20 Hz from ``start_ns`` to ``end_ns``: base_link at x = x0 + 2 m/s * t, at ``y``."""
    for stamp in range(start_ns, end_ns + 1, 50 * MS):
        msg = matrix_to_transform(pose(x0 + 2.0 * stamp / S, y), "map", "base_link", stamp)
        listener.receive(TFMessage(transforms=[msg]), static=False)


@pytest.mark.parametrize("loop_s", [12.0, 3.0], ids=["loop-longer-than-cache", "loop-shorter-than-cache"])
@pytest.mark.parametrize("images_first", [False, True], ids=["tf-first", "images-first"])
def test_after_a_bag_loop_lookups_give_the_new_trajectory(loop_s: float, images_first: bool) -> None:
    buffer = tf.Buffer(cache_time=Duration(seconds=10))
    jumps: list[float] = []
    listener = tf.TfListener(buffer, _Node(), on_jump=jumps.append)
    t0 = 1000 * S
    trajectory(listener, t0, t0 + round(loop_s * S), x0=0.0, y=0.0)
    if images_first:  # the node sees the camera stamps go back before any /tf of the new loop arrived
        assert listener.restart_if_older(t0)
        with pytest.raises(tf.TransformException):
            x_at(buffer, t0 + S)  # no pose of the old loop may answer for the new one
    trajectory(listener, t0, t0 + 2 * S, x0=100.0, y=5.0)  # the bag starts again, on another trajectory
    for stamp in (t0, t0 + S + 25 * MS, t0 + 2 * S):
        out = buffer.lookup_transform("map", "base_link", Time(nanoseconds=stamp)).transform.translation
        assert (out.x, out.y) == pytest.approx((100.0 + 2.0 * (stamp - t0 + t0) / S, 5.0), abs=1e-6)
    assert len(jumps) == 1 and jumps[0] == pytest.approx(loop_s, abs=1e-9)


def test_listener_counts_and_skips_unusable_transforms_and_keeps_the_rest() -> None:
    buffer = tf.Buffer()
    listener = tf.TfListener(buffer, _Node())
    bad = matrix_to_transform(pose(1.0), "map", "broken", S)
    bad.transform.translation.x = float("inf")
    listener.receive(TFMessage(transforms=[bad, matrix_to_transform(pose(4.0), "map", "base_link", S)]), False)
    assert listener.rejected == 1 and x_at(buffer, S) == 4.0
    with pytest.raises(tf.LookupException):
        buffer.lookup_transform("map", "broken", Time(seconds=1))


# -------------------------------------------------------------------------------------------- synchroniser

def image(stamp_ns: int, name: str = "") -> Image:
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = name
    return msg


def synchroniser(inputs: int, queue_size: int, slop: float) -> tuple[list[object], list[tuple[int, ...]]]:
    """``inputs`` plain filters into the ApproximateTimeSynchronizer in use; the stamps of each set it emits."""
    filters = [sync.SimpleFilter() for _ in range(inputs)]
    synchroniser = sync.ApproximateTimeSynchronizer(filters, queue_size, slop)
    sets: list[tuple[int, ...]] = []
    synchroniser.registerCallback(lambda *msgs: sets.append(tuple(stamp_to_ns(m.header.stamp) for m in msgs)))
    return filters, sets


def test_slop_is_strict() -> None:
    for spread_ns, expected in ((60 * MS, 0), (60 * MS - 1, 1)):
        filters, sets = synchroniser(6, 10, 0.06)
        for camera in range(6):
            filters[camera].signalMessage(image(S + camera * spread_ns // 5))
        assert len(sets) == expected, f"six stamps spread {spread_ns} ns at slop 0.06"


def test_set_holds_the_arrival_and_the_nearest_stamps_and_leaves_older_ones_queued() -> None:
    filters, sets = synchroniser(2, 10, 0.06)
    filters[0].signalMessage(image(S))
    filters[0].signalMessage(image(S + 50 * MS))
    filters[1].signalMessage(image(S + 40 * MS))  # nearest on input 0 is 50 ms (10 ms away), not 0 ms
    assert sets == [(S + 50 * MS, S + 40 * MS)]
    filters[1].signalMessage(image(S + 10 * MS))  # the 0 ms image stayed queued and pairs now
    assert sets[1] == (S, S + 10 * MS)


def test_queue_size_drops_the_oldest_stamp() -> None:
    filters, sets = synchroniser(2, 2, 0.06)
    for second in (1, 2, 3):
        filters[0].signalMessage(image(second * S))
    filters[1].signalMessage(image(S))  # 1 s overflowed from input 0's queue of 2
    assert sets == []
    filters[1].signalMessage(image(2 * S))
    assert sets == [(2 * S, 2 * S)]


def test_camera_set_sync_survives_a_raising_callback_and_goes_on() -> None:
    filters = [sync.SimpleFilter() for _ in range(3)]
    camera_sync = sync.CameraSetSync(filters, queue_size=10, slop=0.06)
    received: list[int] = []

    def callback(*msgs: Image) -> None:
        if not received:
            received.append(-1)
            raise RuntimeError("the first set breaks the callback")
        received.append(stamp_to_ns(msgs[0].header.stamp))

    camera_sync.registerCallback(callback)
    done = threading.Event()

    def feed() -> None:
        for period in range(4):
            for camera in range(3):
                filters[camera].signalMessage(image(period * 100 * MS + camera * 10 * MS))
        done.set()

    worker = threading.Thread(target=feed, daemon=True)
    worker.start()
    assert done.wait(10.0), "a message blocked behind the synchroniser after the callback raised"
    assert received == [-1, 100 * MS, 200 * MS, 300 * MS]
    counters = camera_sync.counters()
    assert counters["sets_out"] == 4 and counters["callback_errors"] == 1 and counters["messages_dropped"] == 0
