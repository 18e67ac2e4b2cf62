"""Messages <-> numpy: the occupancy grid message, CameraInfo intrinsics, transforms and stamps.

Everything is vectorised (``tobytes`` / ``frombuffer``); readers are strict and raise ValueError naming the
message field that is wrong, so a malformed message never reaches the pipeline.
"""

from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import Transform, TransformStamped
from sensor_msgs.msg import CameraInfo

from gsdocc_ros.msg import SemanticVoxelGrid
from gsdocc_ros.pipeline.geometry import make_transform, matrix_to_quaternion, quaternion_to_matrix
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, GridGeometry, OccupancyGrid

NS_PER_S = 1_000_000_000

MAX_INTRINSIC = 1e6
"""Largest |entry| of a CameraInfo K accepted (pixels); larger values are a unit or parsing error."""


def stamp_to_ns(stamp: TimeMsg) -> int:
    """Nanoseconds of a builtin_interfaces/Time (e.g. ``msg.header.stamp``)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(stamp_ns: int) -> TimeMsg:
    """builtin_interfaces/Time of a non-negative stamp in nanoseconds; ValueError when it does not fit."""
    stamp_ns = int(stamp_ns)
    sec, nanosec = divmod(stamp_ns, NS_PER_S)
    if stamp_ns < 0 or sec >= 2**31:
        raise ValueError(f"stamp_ns: {stamp_ns} does not fit builtin_interfaces/Time (0 .. 2^31 s)")
    return TimeMsg(sec=sec, nanosec=nanosec)


def transform_to_matrix(transform: TransformStamped | Transform) -> np.ndarray:
    """float64 (4, 4) matrix of a geometry_msgs Transform(Stamped): maps child-frame points into the parent frame.

    Quaternions slightly off unit norm are normalised, garbage (zero, NaN) raises ValueError (pipeline.geometry).
    """
    t = transform.transform if isinstance(transform, TransformStamped) else transform
    q = t.rotation
    rotation = quaternion_to_matrix([q.x, q.y, q.z, q.w])
    return make_transform(rotation, [t.translation.x, t.translation.y, t.translation.z])


def matrix_to_transform(matrix: np.ndarray, frame_id: str, child_frame_id: str, stamp_ns: int) -> TransformStamped:
    """TransformStamped (parent ``frame_id`` <- ``child_frame_id``) of a rigid float (4, 4) matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"matrix: expected shape (4, 4), got {matrix.shape}")
    q = matrix_to_quaternion(matrix[:3, :3])  # validates orthonormality
    msg = TransformStamped()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, matrix[:3, 3])
    rot = msg.transform.rotation
    rot.x, rot.y, rot.z, rot.w = map(float, q)
    return msg


def camera_info_to_intrinsics(msg: CameraInfo) -> tuple[np.ndarray, tuple[int, int]]:
    """(K float64 (3, 3), (height, width)) of a CameraInfo, refusing unset, non-finite or implausible values.

    Checks: width and height > 0; K finite, |K| <= MAX_INTRINSIC, fx, fy > 0, zero lower row but K[2, 2] = 1,
    principal point inside the image. The model takes rectified images, so D is not used.
    """
    where = f"CameraInfo (frame_id '{msg.header.frame_id}')"
    height, width = int(msg.height), int(msg.width)
    if height <= 0 or width <= 0:
        raise ValueError(f"{where}: height/width must be positive, got {height}x{width} (is the message unset?)")
    k = np.asarray(msg.k, dtype=np.float64)
    if k.shape != (9,):
        raise ValueError(f"{where}: k must hold 9 values, got {k.shape[0]}")
    k = k.reshape(3, 3)
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{where}: k contains NaN or infinite values: {k.tolist()}")
    if np.abs(k).max() > MAX_INTRINSIC:
        raise ValueError(f"{where}: k has a value above {MAX_INTRINSIC:g} px: {k.tolist()}")
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if fx <= 0 or fy <= 0:
        raise ValueError(f"{where}: focal lengths fx={fx}, fy={fy} must be positive (all-zero k means unset)")
    if not (k[1, 0] == 0 and k[2, 0] == 0 and k[2, 1] == 0 and k[2, 2] == 1):
        raise ValueError(f"{where}: k must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {k.tolist()}")
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise ValueError(f"{where}: principal point ({cx}, {cy}) lies outside the {width}x{height} image")
    return k, (height, width)


def _float32_decimal(value: float) -> float:
    """The shortest decimal of a float32 value as a Python float (0.4f -> 0.4), so float32 fields round-trip."""
    return float(str(np.float32(value)))


def _uint8_array(values: np.ndarray) -> array.array:
    """C-order bytes of ``values`` as array('B'), the type rclpy stores uint8[] fields in (no per-element check)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values, dtype=np.uint8).tobytes())
    return out


def grid_to_message(grid: OccupancyGrid, frame_id: str, source: str = "") -> SemanticVoxelGrid:
    """SemanticVoxelGrid of ``grid`` in ``frame_id``, stamped with ``grid.stamp_ns``, Occ3D class names."""
    shape = grid.geometry.size
    if grid.labels.shape != shape:
        raise ValueError(f"grid.labels: shape {grid.labels.shape} differs from geometry.size {shape}")
    msg = SemanticVoxelGrid()
    msg.header.stamp = ns_to_stamp(grid.stamp_ns)
    msg.header.frame_id = frame_id
    msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = map(float, grid.geometry.origin)
    msg.origin.orientation.w = 1.0
    msg.voxel_size = float(grid.geometry.voxel_size)
    msg.size_x, msg.size_y, msg.size_z = shape
    msg.labels = _uint8_array(grid.labels)  # C order (X, Y, Z)
    msg.class_names = list(CLASS_NAMES)
    msg.free_index = FREE_INDEX
    for name in ("confidence", "camera_mask"):
        values = getattr(grid, name)
        if values is None:
            continue
        if values.shape != shape:
            raise ValueError(f"grid.{name}: shape {values.shape} differs from geometry.size {shape}")
        setattr(msg, name, _uint8_array(values))  # bool mask -> 0/1
    msg.source = source
    return msg


def grid_from_message(msg: SemanticVoxelGrid) -> OccupancyGrid:
    """OccupancyGrid of a SemanticVoxelGrid; ValueError naming the field when sizes, classes or values disagree.

    Only axis-aligned grids (identity origin orientation) with the Occ3D class list are accepted, since the
    rest of the package interprets labels by that list.
    """
    size = (int(msg.size_x), int(msg.size_y), int(msg.size_z))
    if min(size) <= 0:
        raise ValueError(f"SemanticVoxelGrid.size_x/size_y/size_z: must all be positive, got {size}")
    count = math.prod(size)
    voxel_size = float(msg.voxel_size)
    if not (math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"SemanticVoxelGrid.voxel_size: must be positive and finite, got {voxel_size}")
    o = msg.origin.orientation
    if (o.x, o.y, o.z, o.w) != (0.0, 0.0, 0.0, 1.0):
        raise ValueError(f"SemanticVoxelGrid.origin.orientation: only the identity is supported, got "
                         f"({o.x}, {o.y}, {o.z}, {o.w})")
    position = msg.origin.position
    origin = (position.x, position.y, position.z)
    if not all(math.isfinite(v) for v in origin):
        raise ValueError(f"SemanticVoxelGrid.origin.position: must be finite, got {origin}")
    if tuple(msg.class_names) != CLASS_NAMES:
        raise ValueError(f"SemanticVoxelGrid.class_names: expected the {len(CLASS_NAMES)} Occ3D classes "
                         f"{list(CLASS_NAMES)}, got {list(msg.class_names)}")
    if msg.free_index != FREE_INDEX:
        raise ValueError(f"SemanticVoxelGrid.free_index: expected {FREE_INDEX}, got {msg.free_index}")

    def per_voxel(name: str, optional: bool) -> np.ndarray | None:
        data = np.frombuffer(getattr(msg, name), dtype=np.uint8)
        if optional and data.size == 0:
            return None
        if data.size != count:
            raise ValueError(f"SemanticVoxelGrid.{name}: {data.size} entries, but size_x*size_y*size_z = "
                             f"{size[0]}*{size[1]}*{size[2]} = {count}" + (" (or 0 when not sent)" if optional else ""))
        return data.reshape(size).copy()  # (X, Y, Z), detached from the message

    labels = per_voxel("labels", optional=False)
    if int(labels.max()) >= len(CLASS_NAMES):
        raise ValueError(f"SemanticVoxelGrid.labels: value {int(labels.max())} has no entry in class_names "
                         f"({len(CLASS_NAMES)} classes)")
    camera_mask = per_voxel("camera_mask", optional=True)
    if camera_mask is not None:
        if int(camera_mask.max()) > 1:
            raise ValueError(f"SemanticVoxelGrid.camera_mask: values must be 0 or 1, found {int(camera_mask.max())}")
        camera_mask = camera_mask.astype(bool)
    geometry = GridGeometry(origin=origin, voxel_size=_float32_decimal(voxel_size), size=size)
    return OccupancyGrid(labels=labels, stamp_ns=stamp_to_ns(msg.header.stamp), geometry=geometry,
                         confidence=per_voxel("confidence", optional=True), camera_mask=camera_mask)
