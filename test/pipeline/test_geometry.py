"""Pose math: quaternions both orders, rigid transforms, camera -> key ego and ego motion on real nuScenes poses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsdocc_ros.pipeline.geometry import (camera_to_key_ego, ego_motion, invert_transform, make_transform,
                                          matrix_to_quaternion, quaternion_to_matrix, quaternion_wxyz_to_matrix)

SCENE_0061 = Path("nuscenes_sample") / "scene-0061_ca9a282c"

unit_quaternions = st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1).map(lambda q: np.asarray(q) / np.linalg.norm(q))


def yaw_pose(yaw_deg: float, x: float, y: float) -> np.ndarray:
    """Ego pose (4, 4) on flat ground with the given heading and position."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return make_transform([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], [x, y, 0.0])


def test_quaternion_known_rotation() -> None:
    """90 degrees about z in xyzw maps x to y; the same rotation in wxyz gives the same matrix."""
    half = math.sqrt(0.5)
    expected = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(quaternion_to_matrix([0.0, 0.0, half, half]), expected, atol=1e-15)
    np.testing.assert_allclose(quaternion_wxyz_to_matrix([half, 0.0, 0.0, half]), expected, atol=1e-15)
    np.testing.assert_allclose(matrix_to_quaternion(expected), [0.0, 0.0, half, half], atol=1e-15)


@settings(max_examples=200, deadline=None)
@given(unit_quaternions)
def test_quaternion_round_trip(q: np.ndarray) -> None:
    """matrix -> quaternion inverts quaternion -> matrix up to the sign of q (w >= 0 is returned)."""
    rotation = quaternion_to_matrix(q)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-12)
    back = matrix_to_quaternion(rotation)
    assert back[3] >= 0.0
    np.testing.assert_allclose(back, q if np.dot(back, q) > 0 else -q, atol=1e-9)


def test_half_turns_round_trip() -> None:
    """180-degree rotations (w = 0), where a trace-only formula divides by zero, round-trip."""
    for axis in np.eye(3):
        q = np.append(axis, 0.0)
        back = matrix_to_quaternion(quaternion_to_matrix(q))
        np.testing.assert_allclose(np.abs(back), np.abs(q), atol=1e-12)


def test_quaternion_validation() -> None:
    """NaN, zero or far-from-unit quaternions raise naming the parameter; float noise is normalised."""
    with pytest.raises(ValueError, match="q_xyzw.*NaN"):
        quaternion_to_matrix([0.0, float("nan"), 0.0, 1.0])
    with pytest.raises(ValueError, match="q_xyzw: norm 0"):
        quaternion_to_matrix([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="q_xyzw: norm 2"):
        quaternion_to_matrix([0.0, 0.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="q_wxyz: expected shape"):
        quaternion_wxyz_to_matrix([1.0, 0.0, 0.0])
    noisy = quaternion_to_matrix(np.array([0.1, 0.2, 0.3, 0.9]) / np.linalg.norm([0.1, 0.2, 0.3, 0.9]) * (1 + 1e-5))
    np.testing.assert_allclose(noisy @ noisy.T, np.eye(3), atol=1e-14)


def test_transform_validation() -> None:
    """Reflections, scaled matrices, bad last rows and NaNs are refused with the parameter's name."""
    with pytest.raises(ValueError, match="rotation: determinant"):
        matrix_to_quaternion(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="rotation: not orthonormal"):
        make_transform(np.eye(3) * 1.01, np.zeros(3))
    with pytest.raises(ValueError, match="translation.*NaN"):
        make_transform(np.eye(3), [0.0, float("nan"), 0.0])
    bad_row = np.eye(4)
    bad_row[3, 0] = 1.0
    with pytest.raises(ValueError, match="transform: last row"):
        invert_transform(bad_row)
    with pytest.raises(ValueError, match="ego2global_key: expected shape"):
        camera_to_key_ego(np.eye(4), np.eye(4), np.eye(3))


def test_wxyz_matches_nuscenes_tables(shared_data: Path) -> None:
    """The raw nuScenes ego_pose/calibrated_sensor records (wxyz) rebuild calib.json's matrices."""
    scene = shared_data / SCENE_0061
    calib = json.loads((scene / "calib.json").read_text())
    tables = {name: {r["token"]: r for r in json.loads((scene / "v1.0-test" / f"{name}.json").read_text())}
              for name in ("sample_data", "ego_pose", "calibrated_sensor")}
    checked = 0
    for record in tables["sample_data"].values():
        camera = record["filename"].split("/")[1]
        if camera not in calib["cameras"]:
            continue
        pose = tables["ego_pose"][record["ego_pose_token"]]
        sensor = tables["calibrated_sensor"][record["calibrated_sensor_token"]]
        ego2global = make_transform(quaternion_wxyz_to_matrix(pose["rotation"]), pose["translation"])
        sensor2ego = make_transform(quaternion_wxyz_to_matrix(sensor["rotation"]), sensor["translation"])
        np.testing.assert_allclose(ego2global, calib["cameras"][camera]["ego2global"], atol=1e-6)
        np.testing.assert_allclose(sensor2ego, calib["cameras"][camera]["sensor2ego"], atol=1e-6)
        checked += 1
    assert checked == 6


def test_invert_transform_real_pose(shared_data: Path) -> None:
    """inv(T) @ T is the identity for a real 1000 m-scale pose, and inv(T) is the rigid [R^T, -R^T t]."""
    pose = np.array(json.loads((shared_data / SCENE_0061 / "calib.json").read_text())["ego2global"])
    inverse = invert_transform(pose)
    np.testing.assert_allclose(inverse @ pose, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(inverse[:3, :3], pose[:3, :3].T, atol=1e-7)
    # the stored rotation is orthonormal to ~2e-8 only, which R^T turns into ~3e-5 m at 1250 m
    np.testing.assert_allclose(inverse[:3, 3], -pose[:3, :3].T @ pose[:3, 3], atol=1e-4)
    np.testing.assert_array_equal(inverse[3], [0.0, 0.0, 0.0, 1.0])


def test_camera_to_key_ego_real(shared_data: Path) -> None:
    """Key = the camera's own pose gives sensor2ego; CAM_BACK fired 25 ms after CAM_FRONT at 9.2 m/s moves 0.23 m."""
    calib = json.loads((shared_data / SCENE_0061 / "calib.json").read_text())
    front, back = calib["cameras"]["CAM_FRONT"], calib["cameras"]["CAM_BACK"]
    same = camera_to_key_ego(front["sensor2ego"], front["ego2global"], front["ego2global"])
    np.testing.assert_allclose(same, front["sensor2ego"], atol=1e-12)
    back_in_key = camera_to_key_ego(back["sensor2ego"], back["ego2global"], front["ego2global"])
    shift = back_in_key[:3, 3] - np.asarray(back["sensor2ego"])[:3, 3]
    dt = (back["timestamp_us"] - front["timestamp_us"]) * 1e-6
    assert np.linalg.norm(shift[:2]) == pytest.approx(9.23 * dt, rel=0.05)
    assert shift[0] > 0.0  # driving forward: the later camera sits ahead of where the key ego was


def test_ego_motion_sign() -> None:
    """Moving 1 m forward puts the current origin at +1 m x in the previous frame, whatever the heading."""
    for yaw in (0.0, 90.0, -135.0):
        prev = yaw_pose(yaw, 10.0, -5.0)
        step = yaw_pose(0.0, 1.0, 0.0)
        curr = prev @ step
        motion = ego_motion(prev, curr)
        np.testing.assert_allclose(motion @ [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0], atol=1e-12)
        np.testing.assert_allclose(ego_motion(curr, curr), np.eye(4), atol=1e-12)
