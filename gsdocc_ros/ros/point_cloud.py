"""The occupied voxels of a grid as a sensor_msgs/PointCloud2: x, y, z, rgb (Occ3D colour), label, confidence.

A point cloud is one flat byte block, so building and serialising it costs a few numpy copies where the marker
array walks one Python object per voxel, and RViz draws it as boxes of the voxel size in one batch. Free voxels
are never sent.

The message is packed by ``sensor_msgs_py.point_cloud2.create_cloud`` where that genuine ROS 2 module imports, else
by ``create_cloud`` here, which follows the same layout rules (measured against the genuine module's behaviour in
test/ros/test_point_cloud.py): the fields' structured dtype with no trailing padding (``point_step`` = end of the
last field), one row (``height`` 1, ``row_step`` = point_step * width), the machine's byte order, ``is_dense``
False. ``read_points`` is the matching reader.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from gsdocc_ros.pipeline.grid import FREE_INDEX, OCC3D_COLORS, OccupancyGrid
from gsdocc_ros.ros.backends import FALLBACK, genuine
from gsdocc_ros.ros.conversions import ns_to_stamp

FIELDS: tuple[PointField, ...] = (
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
    PointField(name="label", offset=16, datatype=PointField.UINT8, count=1),
    PointField(name="confidence", offset=17, datatype=PointField.UINT8, count=1),
)
"""The cloud's fields: voxel centre (m, ego frame), colour as RViz reads it (the float32 whose bits are 0x00RRGGBB),
Occ3D label index, and confidence 0..255 for probability 0..1 (0 when the grid carries none)."""

_NUMPY_TYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
                PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}
"""numpy type code of each PointField datatype."""


def point_dtype(fields: Sequence[PointField]) -> np.dtype:
    """Structured dtype of one point: each field at its offset, native byte order, no padding after the last."""
    return np.dtype({"names": [f.name for f in fields], "formats": [_NUMPY_TYPES[f.datatype] for f in fields],
                     "offsets": [f.offset for f in fields]})


def fallback_create_cloud(header: Header, fields: Sequence[PointField], points: np.ndarray) -> PointCloud2:
    """PointCloud2 of a structured array ``points`` (N,) whose dtype is ``point_dtype(fields)``, laid out as
    sensor_msgs_py's create_cloud lays it out (module docstring)."""
    if points.dtype != point_dtype(fields):
        raise ValueError(f"points: dtype {points.dtype} does not match the fields {[f.name for f in fields]}")
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(points).tobytes())
    return PointCloud2(header=header, height=1, width=len(points), fields=list(fields),
                       is_bigendian=sys.byteorder != "little", point_step=points.dtype.itemsize,
                       row_step=points.dtype.itemsize * len(points), data=data, is_dense=False)


def fallback_read_points(cloud: PointCloud2) -> np.ndarray:
    """Structured array (width * height,) of a PointCloud2's points in native byte order, fields by name."""
    dtype = np.dtype({"names": [f.name for f in cloud.fields], "offsets": [f.offset for f in cloud.fields],
                      "formats": [_NUMPY_TYPES[f.datatype] for f in cloud.fields], "itemsize": cloud.point_step})
    points = np.frombuffer(bytes(cloud.data), dtype=dtype, count=cloud.width * cloud.height)
    if bool(cloud.is_bigendian) != (sys.byteorder == "big"):
        points = points.byteswap().view(dtype.newbyteorder())
    return points


_point_cloud2 = genuine("sensor_msgs_py.point_cloud2")
create_cloud = _point_cloud2.create_cloud if _point_cloud2 is not None else fallback_create_cloud
read_points = _point_cloud2.read_points if _point_cloud2 is not None else fallback_read_points
BACKEND = "sensor_msgs_py" if _point_cloud2 is not None else FALLBACK
"""Which packer this process uses (for the start-up log)."""


def _rgb_floats(labels: np.ndarray) -> np.ndarray:
    """float32 (M,) whose bit patterns are 0x00RRGGBB of each label's Occ3D colour (never NaN: top byte zero)."""
    colours = OCC3D_COLORS.astype(np.uint32)  # (18, 3)
    packed = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]  # (18,)
    return packed.view(np.float32)[labels]


def occupied_points(grid: OccupancyGrid) -> np.ndarray:
    """Structured array (M,) of FIELDS, one point per non-free voxel in C order of (x, y, z)."""
    flat = np.flatnonzero(grid.labels != FREE_INDEX)  # (M,)
    index = np.stack(np.unravel_index(flat, grid.labels.shape), axis=1)  # (M, 3)
    centres = grid.geometry.centres(index)  # (M, 3) float32
    labels = grid.labels.reshape(-1)[flat]  # (M,)
    points = np.empty(len(flat), dtype=point_dtype(FIELDS))
    points["x"], points["y"], points["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    points["rgb"] = _rgb_floats(labels)
    points["label"] = labels
    points["confidence"] = 0 if grid.confidence is None else grid.confidence.reshape(-1)[flat]
    return points


def build_point_cloud(grid: OccupancyGrid, frame_id: str) -> PointCloud2:
    """The occupied voxels of ``grid`` as a PointCloud2 in ``frame_id``, stamped with the grid's stamp."""
    header = Header(frame_id=frame_id, stamp=ns_to_stamp(grid.stamp_ns))
    return create_cloud(header, list(FIELDS), occupied_points(grid))
