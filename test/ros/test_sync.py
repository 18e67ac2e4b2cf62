"""The approximate-time synchroniser (genuine or fallback) and CameraSetSync on real nuScenes camera stamps (12 Hz, ~42 ms spread)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rclpy  # noqa: E402 (a missing rclpy is a broken install: fail, never skip)
from sensor_msgs.msg import Image  # noqa: E402

from gsdocc_ros.pipeline.frames import CAMERA_NAMES  # noqa: E402
from gsdocc_ros.ros.sync import (  # noqa: E402
    ApproximateTimeSynchronizer, CameraSetSync, FallbackSimpleFilter, Subscriber,
)
from gsdocc_ros.ros.conversions import ns_to_stamp, stamp_to_ns  # noqa: E402

PERIOD_NS = 83_000_000
"""nuScenes cameras run at 12 Hz."""

NO_LIVENESS_EVENTS = {"stamp_outliers": 0, "camera_timeouts": 0, "degraded_sets": 0}
"""The liveness counters of a rig where no camera is stale or off time."""


@pytest.fixture(scope="module")
def camera_stamps(shared_data: Path) -> list[int]:
    """The six real exposure stamps (ns) of one scene-0061 keyframe, in CAMERA_NAMES order."""
    calib = json.loads((shared_data / "nuscenes_sample" / "scene-0061_ca9a282c" / "calib.json").read_text())
    stamps = [int(calib["cameras"][name]["timestamp_us"]) * 1000 for name in CAMERA_NAMES]
    assert 40e6 < max(stamps) - min(stamps) < 45e6  # the known ~42 ms spread of one nuScenes set
    return stamps


def image(camera: int, stamp_ns: int) -> Image:
    """A real (empty) sensor_msgs/Image of camera ``camera`` stamped ``stamp_ns``."""
    msg = Image()
    msg.header.frame_id = CAMERA_NAMES[camera]
    msg.header.stamp = ns_to_stamp(stamp_ns)
    return msg


def stream(stamps: list[int], periods: int, skip: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int, int]]:
    """(period, camera, stamp) of ``periods`` 83 ms periods, in stamp order, leaving out ``skip`` (period, camera)."""
    out = [(p, c, s + p * PERIOD_NS) for p in range(periods) for c, s in enumerate(stamps) if (p, c) not in skip]
    return sorted(out, key=lambda item: item[2])


def deliver(inputs: list[FallbackSimpleFilter], items: list[tuple[int, int, int]]) -> None:
    """Signal each (period, camera, stamp) on its camera's input."""
    for _, camera, stamp in items:
        inputs[camera].signalMessage(image(camera, stamp))


def periods_of(sets: list[tuple[Image, ...]], stamps: list[int]) -> list[int]:
    """The period of each emitted set, asserting that all six stamps are that period's and in camera order."""
    found = []
    for msgs in sets:
        assert [m.header.frame_id for m in msgs] == list(CAMERA_NAMES)
        offsets = {(stamp_to_ns(m.header.stamp) - s) for m, s in zip(msgs, stamps)}
        assert len(offsets) == 1, f"a set mixes periods: {sorted(offsets)}"
        found.append(offsets.pop() // PERIOD_NS)
    return found


def wired(slop: float, kind: type = CameraSetSync) -> tuple[list[FallbackSimpleFilter], Any, list[tuple[Image, ...]]]:
    """Six plain inputs, a ``kind`` synchroniser over them with queue 10, and the list its sets land in."""
    inputs = [FallbackSimpleFilter() for _ in CAMERA_NAMES]
    sync = kind(inputs, queue_size=10, slop=slop)
    sets: list[tuple[Image, ...]] = []
    sync.registerCallback(lambda *msgs: sets.append(msgs))
    return inputs, sync, sets


def test_synchroniser_groups_real_nuscenes_stamps_into_their_periods(camera_stamps: list[int]) -> None:
    inputs, sync, sets = wired(0.06, ApproximateTimeSynchronizer)
    deliver(inputs, stream(camera_stamps, 6))
    assert periods_of(sets, camera_stamps) == [0, 1, 2, 3, 4, 5]


def test_synchroniser_groups_correctly_under_random_transport_delays(camera_stamps: list[int]) -> None:
    """Arrival = stamp + up to 70 ms of delay, so the next period's first images overtake this period's last."""
    rng = np.random.default_rng(3)
    items = stream(camera_stamps, 12)
    arrival = [stamp + int(rng.uniform(0, 70e6)) for _, _, stamp in items]
    inputs, sync, sets = wired(0.06, ApproximateTimeSynchronizer)
    deliver(inputs, [items[i] for i in np.argsort(arrival, kind="stable")])
    assert periods_of(sets, camera_stamps) == list(range(12))


def test_the_message_filters_doc_slop_never_matches_nuscenes(camera_stamps: list[int]) -> None:
    inputs, sync, sets = wired(0.01)
    deliver(inputs, stream(camera_stamps, 15))
    counters = sync.counters()
    assert sets == [] and counters["sets_out"] == 0 and counters["messages_in"] == 90
    assert counters["messages_dropped"] == 6 * 5  # queues of 10 overflowed for the first 5 periods
    assert counters["incomplete_sets"] == 5


def test_counts_an_incomplete_set_when_one_camera_is_missing(camera_stamps: list[int]) -> None:
    inputs, sync, sets = wired(0.06)
    deliver(inputs, stream(camera_stamps, 5, skip={(2, CAMERA_NAMES.index("CAM_BACK"))}))
    assert periods_of(sets, camera_stamps) == [0, 1, 3, 4]
    assert sync.counters() == {"messages_in": 29, "sets_out": 4, "messages_dropped": 5, "incomplete_sets": 1, "callback_errors": 0,
                               "resets": 0, **NO_LIVENESS_EVENTS}


def test_stale_message_is_dropped_without_counting_a_missed_set(camera_stamps: list[int]) -> None:
    inputs, sync, sets = wired(0.06)
    deliver(inputs, stream(camera_stamps, 2))
    deliver(inputs, [(0, 0, camera_stamps[0] + PERIOD_NS)])  # a duplicate of period 1, after its set went out
    assert len(sets) == 2
    assert sync.counters() == {"messages_in": 13, "sets_out": 2, "messages_dropped": 1, "incomplete_sets": 0, "callback_errors": 0,
                               "resets": 0, **NO_LIVENESS_EVENTS}


def test_time_jumping_backwards_resets_and_sets_resume(camera_stamps: list[int]) -> None:
    inputs, sync, sets = wired(0.06)
    items = stream(camera_stamps, 40)  # 3.3 s of data
    deliver(inputs, items[:-3])  # the last period is left incomplete (3 images queued) ...
    deliver(inputs, items[:12])  # ... when the bag loops back to its start
    assert periods_of(sets, camera_stamps) == list(range(39)) + [0, 1]
    assert sync.counters() == {"messages_in": 237 + 12, "sets_out": 41, "messages_dropped": 3, "incomplete_sets": 1, "callback_errors": 0,
                               "resets": 1, **NO_LIVENESS_EVENTS}
    sync.reset()
    assert sync.counters()["resets"] == 2


def test_sets_form_over_the_middleware_from_six_image_topics(
        camera_stamps: list[int], ros_domain: int) -> None:
    rclpy.init()
    try:
        node = rclpy.create_node("sync_test")
        publishers = [node.create_publisher(Image, f"/{name}/image", 10) for name in CAMERA_NAMES]
        inputs = [Subscriber(node, Image, f"/{name}/image", qos_profile=10) for name in CAMERA_NAMES]
        sync = CameraSetSync(inputs, queue_size=10, slop=0.06)
        sets: list[tuple[Image, ...]] = []
        sync.registerCallback(lambda *msgs: sets.append(msgs))
        deadline = time.monotonic() + 20
        while not all(p.get_subscription_count() for p in publishers) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        for period, camera, stamp in stream(camera_stamps, 3):
            publishers[camera].publish(image(camera, stamp))
            rclpy.spin_once(node, timeout_sec=0.05)
        while len(sets) < 3 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    assert periods_of(sets, camera_stamps) == [0, 1, 2]


# ------------------------------------------------------------------------------------ degraded sets (liveness)

TIMEOUT_S = 0.25
"""camera_timeout_s of these tests: three 83 ms periods."""


def live_wired() -> tuple[list[FallbackSimpleFilter], CameraSetSync, list[tuple[Image | None, ...]]]:
    """Six inputs and a CameraSetSync with camera_timeout_s = TIMEOUT_S."""
    inputs = [FallbackSimpleFilter() for _ in CAMERA_NAMES]
    sync = CameraSetSync(inputs, queue_size=10, slop=0.06, camera_timeout_s=TIMEOUT_S)
    sets: list[tuple[Image | None, ...]] = []
    sync.registerCallback(lambda *msgs: sets.append(msgs))
    return inputs, sync, sets


def set_summary(msgs: tuple[Image | None, ...], stamps: list[int]) -> tuple[int, tuple[int, ...]]:
    """(period, missing camera indices) of one set, asserting its present stamps are all of that period."""
    offsets = {stamp_to_ns(m.header.stamp) - s for m, s in zip(msgs, stamps) if m is not None}
    assert len(offsets) == 1, f"a set mixes periods: {sorted(offsets)}"
    return offsets.pop() // PERIOD_NS, tuple(i for i, m in enumerate(msgs) if m is None)


def test_a_camera_killed_mid_stream_gives_degraded_sets_then_full_ones_when_it_returns(
        camera_stamps: list[int]) -> None:
    back = CAMERA_NAMES.index("CAM_BACK")
    dead = {(p, back) for p in range(10, 20)}  # dead for 10 periods (0.83 s), then back
    inputs, sync, sets = live_wired()
    deliver(inputs, stream(camera_stamps, 30, skip=dead))
    summary = [set_summary(msgs, camera_stamps) for msgs in sets]
    full = [p for p, missing in summary if not missing]
    degraded = [p for p, missing in summary if missing]
    assert all(missing == (back,) for _, missing in summary if missing)
    assert full == list(range(10)) + list(range(20, 30))  # used again from the first set after its return
    # CAM_BACK's last stamp is in period 9; it is stale once the rig is TIMEOUT_S past it, and the queued periods
    # that were waiting for it come out at once: the first degraded set is within the timeout plus one set
    assert degraded[0] <= 9 + TIMEOUT_S * 1e9 // PERIOD_NS + 1 and degraded == list(range(degraded[0], 20))
    assert degraded[0] == 10  # queue_size 10 still held period 10 when the timeout struck
    counters = sync.counters()
    assert counters["camera_timeouts"] == 1 and counters["degraded_sets"] == len(degraded)
    assert counters["resets"] == 0 and counters["stamp_outliers"] == 0 and sync.stale() == frozenset()


def test_a_camera_that_never_publishes_is_left_out_after_the_timeout(camera_stamps: list[int]) -> None:
    inputs, sync, sets = live_wired()
    deliver(inputs, stream(camera_stamps, 12, skip={(p, 0) for p in range(12)}))
    assert [set_summary(msgs, camera_stamps) for msgs in sets] == [(p, (0,)) for p in range(12)]
    assert sync.stale() == {0} and sync.lag_s(0) is None


@pytest.mark.parametrize("offset_s", [10.0, -10.0, 0.5, -0.5])
def test_a_camera_with_a_wrong_clock_never_stops_the_others(camera_stamps: list[int], offset_s: float) -> None:
    """10 s off either way (refused as outliers, no reset) or 0.5 s off (accepted, but stale): left out."""
    front = CAMERA_NAMES.index("CAM_FRONT")
    items = [(p, c, s + (round(offset_s * 1e9) if c == front else 0)) for p, c, s in stream(camera_stamps, 20)]
    inputs, sync, sets = live_wired()
    deliver(inputs, items)
    summary = [set_summary(msgs, camera_stamps) for msgs in sets]
    assert summary[-8:] == [(p, (front,)) for p in range(12, 20)]
    counters = sync.counters()
    assert counters["resets"] == 0 and sync.stale() == {front}
    assert counters["stamp_outliers"] == (20 if abs(offset_s) > 1 else 0)
