"""CameraLiveness on real nuScenes stamps: stale cameras, the timeout of slow rigs, outliers and time jumps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gsdocc_ros.pipeline.frames import CAMERA_NAMES
from gsdocc_ros.ros.camera_liveness import CameraLiveness, StampVerdict


@pytest.fixture(scope="module")
def stamps(shared_data: Path) -> list[int]:
    """The six real exposure stamps (ns) of one scene-0061 keyframe, in CAMERA_NAMES order (~42 ms apart)."""
    calib = json.loads((shared_data / "nuscenes_sample" / "scene-0061_ca9a282c" / "calib.json").read_text())
    return [int(calib["cameras"][name]["timestamp_us"]) * 1000 for name in CAMERA_NAMES]


def feed(liveness: CameraLiveness, stamps: list[int], period_ns: int, periods: range,
         skip: int | None = None) -> list[frozenset[int]]:
    """Each camera's stamp of each period in stamp order; the stale set after every message."""
    seen = []
    for p in periods:
        for camera in sorted(range(len(stamps)), key=lambda c: stamps[c]):
            if camera != skip:
                assert liveness.observe(camera, stamps[camera] + p * period_ns) is StampVerdict.ACCEPT
                seen.append(liveness.stale())
    return seen


def test_a_2hz_keyframe_replay_never_sees_a_camera_stale_mid_set(stamps: list[int]) -> None:
    """0.25 s is shorter than the 0.5 s keyframe period: the timeout grows to three periods instead."""
    liveness = CameraLiveness(6, timeout_s=0.25, jump_s=1.0)
    assert all(not stale for stale in feed(liveness, stamps, 500_000_000, range(6)))
    assert liveness.timeout() == 1_500_000_000
    stale = feed(liveness, stamps, 500_000_000, range(6, 12), skip=4)  # CAM_BACK stops
    first = next(i for i, s in enumerate(stale) if s)
    assert stale[first] == {4} and first // 5 == 3  # stale in the fourth set without it: 3 periods = 1.5 s


def test_a_12hz_rig_keeps_the_parameter(stamps: list[int]) -> None:
    liveness = CameraLiveness(6, timeout_s=0.25, jump_s=1.0)
    feed(liveness, stamps, 83_000_000, range(5))
    rig_time = sorted(stamps, reverse=True)[2]  # reached by three of the six cameras
    assert liveness.timeout() == 250_000_000
    assert [liveness.lag_s(c) for c in range(6)] == pytest.approx([(rig_time - s) / 1e9 for s in stamps])


def test_one_camera_off_time_is_an_outlier_a_majority_is_a_time_jump(stamps: list[int]) -> None:
    liveness = CameraLiveness(6, timeout_s=0.25, jump_s=1.0)
    feed(liveness, stamps, 83_000_000, range(3))
    back = [s - 20 * 10**9 for s in stamps]  # the bag loops 20 s back
    assert [liveness.observe(c, back[c]) for c in range(4)] == [StampVerdict.OUTLIER] * 3 + [StampVerdict.TIME_JUMP]
    assert liveness.stale() == frozenset() and liveness.lag_s(5) is None  # the new time line, from those four
    assert liveness.observe(5, back[5]) is StampVerdict.ACCEPT


def test_a_rig_of_two_follows_a_jump_only_when_both_jump(stamps: list[int]) -> None:
    liveness = CameraLiveness(2, timeout_s=0.25, jump_s=1.0)
    for camera in (0, 1):
        liveness.observe(camera, stamps[camera])
    assert liveness.observe(0, stamps[0] + 10**10) is StampVerdict.OUTLIER
    assert liveness.observe(1, stamps[1] + 10**10) is StampVerdict.TIME_JUMP
