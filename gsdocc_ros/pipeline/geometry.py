"""Rigid-pose math in float64: quaternions, 4x4 transforms, camera -> key-ego extrinsics, ego motion.

Conventions: quaternions are (x, y, z, w) as in ROS unless a name says ``wxyz`` (nuScenes, its YAMLs);
a transform ``A2B`` (4, 4) maps homogeneous points from frame A to frame B. Everything is composed in
float64 and only the final matrices are cast to float32 by the caller (gsdocc_model.md section 9.4).

Non-unit quaternions: a quaternion whose norm is within ``QUATERNION_NORM_TOL`` of 1 is normalised
silently (tf and JSON round-trips leave ~1e-7 of error); anything further off (a zero quaternion from an
unset message, a wrong component order producing garbage) raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

QUATERNION_NORM_TOL = 1e-3
"""Largest |norm - 1| of a quaternion that is normalised silently instead of rejected."""

ROTATION_TOL = 1e-5
"""Largest entry of |R R^T - I| accepted for a rotation matrix."""


def _as_float64(value: ArrayLike, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape``; ValueError naming ``name`` if the shape is wrong or not finite."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values: {array.tolist()}")
    return array


def _check_rotation(rotation: np.ndarray, name: str) -> None:
    """Raise ValueError unless ``rotation`` (3, 3) is orthonormal with determinant +1."""
    error = np.abs(rotation @ rotation.T - np.eye(3)).max()
    if error > ROTATION_TOL:
        raise ValueError(f"{name}: not orthonormal (max |R R^T - I| = {error:.3g} > {ROTATION_TOL})")
    if np.linalg.det(rotation) < 0:
        raise ValueError(f"{name}: determinant is negative (a reflection, not a rotation)")


def _check_rigid(transform: ArrayLike, name: str) -> np.ndarray:
    """``transform`` as a float64 (4, 4) rigid transform; ValueError naming ``name`` otherwise."""
    matrix = _as_float64(transform, (4, 4), name)
    if not np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1], got {matrix[3].tolist()}")
    _check_rotation(matrix[:3, :3], f"{name} rotation block")
    return matrix


def quaternion_to_matrix(q_xyzw: ArrayLike) -> np.ndarray:
    """Rotation matrix (3, 3) of a quaternion (x, y, z, w), the ROS order; see the module note on normalisation."""
    q = _as_float64(q_xyzw, (4,), "q_xyzw")
    norm = np.linalg.norm(q)
    if abs(norm - 1.0) > QUATERNION_NORM_TOL:
        raise ValueError(f"q_xyzw: norm {norm:.6g} is not 1 (tolerance {QUATERNION_NORM_TOL}); "
                         f"an unset or mis-ordered quaternion? got {q.tolist()}")
    x, y, z, w = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quaternion_wxyz_to_matrix(q_wxyz: ArrayLike) -> np.ndarray:
    """Rotation matrix (3, 3) of a quaternion in nuScenes order (w, x, y, z)."""
    q = _as_float64(q_wxyz, (4,), "q_wxyz")
    return quaternion_to_matrix(np.roll(q, -1))  # (w, x, y, z) -> (x, y, z, w)


def matrix_to_quaternion(rotation: ArrayLike) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 of a rotation matrix (3, 3) (Shepperd's method, stable near 180 deg)."""
    r = _as_float64(rotation, (3, 3), "rotation")
    _check_rotation(r, "rotation")
    trace = np.trace(r)
    candidates = np.array([r[0, 0], r[1, 1], r[2, 2], trace])
    largest = int(np.argmax(candidates))
    if largest == 3:  # w is the largest component
        w = 0.5 * np.sqrt(1.0 + trace)
        q = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], 0.0]) / (4.0 * w)
        q[3] = w
    else:  # one of x, y, z is the largest: i, j, k cycle through the axes
        i, j, k = largest, (largest + 1) % 3, (largest + 2) % 3
        q = np.empty(4)
        q[i] = 0.5 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        scale = 4.0 * q[i]
        q[j] = (r[j, i] + r[i, j]) / scale
        q[k] = (r[k, i] + r[i, k]) / scale
        q[3] = (r[k, j] - r[j, k]) / scale
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def make_transform(rotation: ArrayLike, translation: ArrayLike) -> np.ndarray:
    """4x4 rigid transform from a rotation (3, 3) and a translation (3,)."""
    r = _as_float64(rotation, (3, 3), "rotation")
    _check_rotation(r, "rotation")
    transform = np.eye(4)
    transform[:3, :3] = r
    transform[:3, 3] = _as_float64(translation, (3,), "translation")
    return transform


def invert_transform(transform: ArrayLike) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (general inverse: exact for poses stored with rounded rotations)."""
    inverse = np.linalg.inv(_check_rigid(transform, "transform"))
    inverse[3] = (0.0, 0.0, 0.0, 1.0)
    return inverse


def camera_to_key_ego(sensor2ego: ArrayLike, ego2global_cam: ArrayLike, ego2global_key: ArrayLike) -> np.ndarray:
    """Camera -> key-ego transform (4, 4): inv(key pose) @ camera-time ego pose @ sensor2ego.

    The model's extrinsics: the key ego pose is CAM_FRONT's (gsdocc_model.md section 1, "Extrinsics fed").
    """
    sensor = _check_rigid(sensor2ego, "sensor2ego")
    cam_pose = _check_rigid(ego2global_cam, "ego2global_cam")
    key_pose = _check_rigid(ego2global_key, "ego2global_key")
    return invert_transform(key_pose) @ cam_pose @ sensor


def ego_motion(prev_ego2global: ArrayLike, curr_ego2global: ArrayLike) -> np.ndarray:
    """Current -> previous ego transform (4, 4): inv(prev) @ curr, the history warp's ``curr_to_prev_ego``."""
    prev = _check_rigid(prev_ego2global, "prev_ego2global")
    curr = _check_rigid(curr_ego2global, "curr_ego2global")
    return invert_transform(prev) @ curr
