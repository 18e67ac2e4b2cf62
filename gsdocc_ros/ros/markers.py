"""RViz markers of an occupancy grid: DELETEALL, then one CUBE_LIST per present class in the Occ3D colours.

Where the time goes: an rclpy message holding 40k ``geometry_msgs/Point`` objects costs about 0.1 s to build
in Python and another 0.1 s for rclpy to serialise on publish (both walk the points one Python object at a
time). ``build_markers_cdr`` avoids both: it serialises a small template MarkerArray (one placeholder point
per class) with rclpy, then splices each class's points in as one numpy block of float64 triples. The node
publishes those bytes directly (``publisher.publish(data)``); ``build_markers`` builds the same message as
objects for callers that need them. ``build_markers_reference`` is the slow per-voxel twin for tests and
benchmarks/bm_markers.py.

Drawn voxels: every voxel whose label is not free, not in ``hidden_classes`` and, with
``camera_visible_only``, inside ``grid.camera_mask``. With ``max_voxels``, the nearest ones to the ego (the
frame origin) are kept: squared distance of the voxel centre, ties broken by the C-order voxel index, so
the choice is deterministic and never flickers between equal candidates. Points are in C order (x, y, z).
"""

from __future__ import annotations

import struct
from collections.abc import Collection

import numpy as np
from builtin_interfaces.msg import Duration as DurationMsg
from geometry_msgs.msg import Point
from rclpy.serialization import serialize_message
from visualization_msgs.msg import Marker, MarkerArray

from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_COLORS, OccupancyGrid
from gsdocc_ros.ros.conversions import NS_PER_S, ns_to_stamp

_PLACEHOLDER = (-1.2345678901234567e-300, 3.3333333333333333e-301, -7.7777777777777777e-302)
"""A point no voxel centre can equal; its 24 serialised bytes mark where a class's points go."""


def _check_options(grid: OccupancyGrid, hidden_classes: Collection[str], camera_visible_only: bool,
                   max_voxels: int | None) -> None:
    """ValueError naming the option or grid field that cannot be drawn."""
    unknown = sorted(set(hidden_classes) - set(CLASS_NAMES))
    if unknown:
        raise ValueError(f"hidden_classes: unknown class name(s) {unknown}; known: {', '.join(CLASS_NAMES)}")
    if camera_visible_only and grid.camera_mask is None:
        raise ValueError("camera_visible_only: grid.camera_mask is None (the runner must fill the camera mask)")
    if max_voxels is not None and max_voxels < 1:
        raise ValueError(f"max_voxels: must be >= 1 or None, got {max_voxels}")
    if grid.labels.size and int(grid.labels.max()) >= len(CLASS_NAMES):
        raise ValueError(f"grid.labels: value {int(grid.labels.max())} is not a class index (< {len(CLASS_NAMES)})")


def _header_markers(grid: OccupancyGrid, frame_id: str, lifetime_s: float,
                    classes: list[int]) -> MarkerArray:
    """DELETEALL, then one CUBE_LIST per class in ``classes`` with colour, scale and lifetime but no points."""
    stamp = ns_to_stamp(grid.stamp_ns)
    lifetime_ns = round(lifetime_s * NS_PER_S)
    lifetime = DurationMsg(sec=lifetime_ns // NS_PER_S, nanosec=lifetime_ns % NS_PER_S)
    clear = Marker(action=Marker.DELETEALL)
    clear.header.frame_id, clear.header.stamp = frame_id, stamp
    markers = [clear]
    for label in classes:
        marker = Marker(ns=CLASS_NAMES[label], id=label, type=Marker.CUBE_LIST, action=Marker.ADD, lifetime=lifetime)
        marker.header.frame_id, marker.header.stamp = frame_id, stamp
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = float(grid.geometry.voxel_size)
        rgb = OCC3D_COLORS[label].astype(np.float32) / np.float32(255.0)  # float32: the values on the wire
        marker.color.r, marker.color.g, marker.color.b = map(float, rgb)
        marker.color.a = 1.0
        markers.append(marker)
    return MarkerArray(markers=markers)


def _selected(grid: OccupancyGrid, hidden_classes: Collection[str], camera_visible_only: bool,
              max_voxels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(labels (M,), centres float32 (M, 3)) of the voxels to draw, in C order (vectorised)."""
    keep = grid.labels != FREE_INDEX  # (X, Y, Z) bool
    for name in set(hidden_classes):
        keep &= grid.labels != CLASS_NAMES.index(name)
    if camera_visible_only:
        keep &= grid.camera_mask.astype(bool)
    flat = np.flatnonzero(keep)  # (M,) C-order positions
    index = np.stack(np.unravel_index(flat, keep.shape), axis=1)  # (M, 3) integer (x, y, z)
    centres = grid.geometry.centres(index)  # (M, 3)
    if max_voxels is not None and len(flat) > max_voxels:
        c = centres.astype(np.float64)
        distance = c[:, 0] * c[:, 0] + c[:, 1] * c[:, 1] + c[:, 2] * c[:, 2]
        nearest = np.argsort(distance, kind="stable")[:max_voxels]  # by distance, ties in C order
        nearest.sort()  # back to C order
        flat, centres = flat[nearest], centres[nearest]
    return grid.labels.reshape(-1)[flat], centres


def _class_blocks(grid: OccupancyGrid, hidden_classes: Collection[str], camera_visible_only: bool,
                  max_voxels: int | None) -> tuple[list[int], list[np.ndarray]]:
    """(present classes ascending, float32 (Mk, 3) centres of each in C order) after checking the options."""
    _check_options(grid, hidden_classes, camera_visible_only, max_voxels)
    labels, centres = _selected(grid, hidden_classes, camera_visible_only, max_voxels)
    order = np.argsort(labels, kind="stable")  # group by class, C order inside each class
    classes, starts = np.unique(labels[order], return_index=True)
    blocks = np.split(centres[order], starts[1:]) if len(classes) else []
    return classes.tolist(), blocks


def build_markers_cdr(grid: OccupancyGrid, frame_id: str, lifetime_s: float, *,
                      hidden_classes: Collection[str] = (), camera_visible_only: bool = False,
                      max_voxels: int | None = None) -> bytes:
    """Serialised MarkerArray of ``grid`` (publish it as is): DELETEALL, then a CUBE_LIST per present class.

    ``lifetime_s`` should be at least the output period so that markers do not flicker between grids.
    """
    classes, blocks = _class_blocks(grid, hidden_classes, camera_visible_only, max_voxels)
    template = _header_markers(grid, frame_id, lifetime_s, classes)
    for marker in template.markers[1:]:
        marker.points = [Point(x=_PLACEHOLDER[0], y=_PLACEHOLDER[1], z=_PLACEHOLDER[2])]
    return _splice_points(serialize_message(template), blocks)


def _splice_points(blob: bytes, blocks: list[np.ndarray]) -> bytes:
    """Replace the k-th one-point placeholder sequence in serialised ``blob`` by ``blocks[k]`` (Mk, 3).

    CDR stores a sequence as a uint32 count followed by its elements aligned to 8 bytes (XCDR1) or 4 (XCDR2),
    so the count sits 4 bytes before the placeholder, or 8 with zero padding between. Each block is a whole
    number of 24-byte points, so everything after it keeps its alignment.
    """
    little = blob[1] == 1  # encapsulation header: 00 01 = little-endian CDR, 00 00 = big-endian
    endian = "<" if little else ">"
    placeholder = np.asarray(_PLACEHOLDER, dtype=f"{endian}f8").tobytes()
    one = struct.pack(f"{endian}I", 1)
    parts, start = [], 0
    for block in blocks:
        at = blob.find(placeholder, start)
        count_at = next((c for c in (at - 4, at - 8) if at >= 0 and blob[c:c + 4] == one), None)
        if count_at is None:
            raise RuntimeError("marker serialisation layout not recognised: placeholder point or its count missing")
        parts += [blob[start:count_at], struct.pack(f"{endian}I", len(block)), blob[count_at + 4:at],
                  np.ascontiguousarray(block, dtype=f"{endian}f8").tobytes()]  # (Mk, 3) float32 -> float64
        start = at + len(placeholder)
    if blob.find(placeholder, start) >= 0:
        raise RuntimeError("marker serialisation layout not recognised: more placeholders than classes")
    parts.append(blob[start:])
    return b"".join(parts)


def build_markers(grid: OccupancyGrid, frame_id: str, lifetime_s: float, *, hidden_classes: Collection[str] = (),
                  camera_visible_only: bool = False, max_voxels: int | None = None) -> MarkerArray:
    """The message of build_markers_cdr as rclpy objects, for callers that need them (Point objects from the
    numpy selection: faster than deserialising the bytes, which also makes one Python Point per voxel)."""
    classes, blocks = _class_blocks(grid, hidden_classes, camera_visible_only, max_voxels)
    result = _header_markers(grid, frame_id, lifetime_s, classes)
    for marker, block in zip(result.markers[1:], blocks):
        marker.points = [Point(x=x, y=y, z=z) for x, y, z in block.tolist()]  # float32 -> exact Python floats
    return result


def build_markers_reference(grid: OccupancyGrid, frame_id: str, lifetime_s: float, *,
                            hidden_classes: Collection[str] = (), camera_visible_only: bool = False,
                            max_voxels: int | None = None) -> MarkerArray:
    """Slow, obviously correct twin of build_markers: one Python step and one Point per voxel."""
    _check_options(grid, hidden_classes, camera_visible_only, max_voxels)
    candidates = []  # (squared distance, C-order position, label, centre)
    position = 0
    for index in np.ndindex(*grid.labels.shape):
        label = int(grid.labels[index])
        visible = not camera_visible_only or bool(grid.camera_mask[index])
        if label != FREE_INDEX and CLASS_NAMES[label] not in hidden_classes and visible:
            x, y, z = (float(v) for v in grid.geometry.centres(np.array([index]))[0])
            candidates.append((x * x + y * y + z * z, position, label, (x, y, z)))
        position += 1
    if max_voxels is not None:
        candidates = sorted(sorted(candidates)[:max_voxels], key=lambda item: item[1])
    points: dict[int, list[Point]] = {}
    for _, _, label, (x, y, z) in candidates:
        points.setdefault(label, []).append(Point(x=x, y=y, z=z))
    result = _header_markers(grid, frame_id, lifetime_s, sorted(points))
    for marker in result.markers[1:]:
        marker.points = points[marker.id]
    return result
