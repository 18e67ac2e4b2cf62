"""Grids from the live graph: SemanticVoxelGrid messages received with rclpy and saved as grid files.

Used by `gsdocc record`, `gsdocc render --topic` and the demo. A grid file holds `semantics` uint8 (X, Y, Z) in
Occ3D order, what the message says the grid shows (`source`, `frame_id`, `stamp_ns`, `class_names`: GridInfo),
`confidence` / `camera_mask` when the message carries them, and, when the bag's poses are known, `ego_pose`
(ego -> map at the grid's stamp) and `lidar_to_ego` for the RayIoU origins.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_poses import BagPoses
from gsdocc_ros.io.grid_files import GridInfo, write_grid_file
from gsdocc_ros.io.sample_tokens import TokenMap, grid_file_name
from gsdocc_ros.pipeline.grid import GridGeometry

QUEUE_DEPTH = 50
"""Subscription history depth: grids are large, but none should be lost while a file is written."""


def receive_grids(topic: str, count: int | None = None, timeout_s: float | None = None,
                  reliable: bool = True) -> Iterator[Any]:
    """Yield SemanticVoxelGrid messages from ``topic`` until ``count`` arrived or ``timeout_s`` passed.

    Uses its own rclpy context, so it works beside other nodes in the same process; the subscription callback
    only enqueues, the caller handles each message between spins.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from gsdocc_ros.msg import SemanticVoxelGrid

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH,
                     reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
    context = rclpy.Context()
    with rclpy.init(context=context):
        node = rclpy.create_node("gsdocc_record", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        queue: deque = deque()
        node.create_subscription(SemanticVoxelGrid, topic, lambda msg: queue.append(msg), qos)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        received = 0
        try:
            while count is None or received < count:
                executor.spin_once(timeout_sec=0.05)
                while queue and (count is None or received < count):
                    received += 1
                    yield queue.popleft()
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            executor.shutdown()
            node.destroy_node()


def grid_info(msg: Any) -> GridInfo:
    """What a SemanticVoxelGrid says it shows: its source, frame, stamp and class names (None where empty).

    Call it on a message ``grid_from_message`` accepted, so the class names are the Occ3D ones.
    """
    from gsdocc_ros.ros.conversions import stamp_to_ns

    return GridInfo(source=msg.source or None, frame_id=msg.header.frame_id or None,
                    stamp_ns=stamp_to_ns(msg.header.stamp), class_names=tuple(msg.class_names) or None)


def save_message(msg: Any, out: Path, tokens: TokenMap | None, poses: BagPoses | None = None) -> Path:
    """Write one SemanticVoxelGrid to OUT/<name>.npz (strict size checks first) with its source, frame, stamp and
    class names, and its pose when known."""
    from gsdocc_ros.ros.conversions import grid_from_message

    grid = grid_from_message(msg)  # ValueError naming the field when sizes or values disagree
    extra: dict[str, np.ndarray] = {}
    if poses is not None and poses.lidar_to_ego is not None and msg.header.frame_id == poses.ego_frame:
        ego_pose = poses.lookup(grid.stamp_ns)
        if ego_pose is not None:
            extra.update(ego_pose=ego_pose, lidar_to_ego=poses.lidar_to_ego)
    if grid.confidence is not None:
        extra["confidence"] = grid.confidence
    if grid.camera_mask is not None:
        extra["camera_mask"] = grid.camera_mask.astype(np.uint8)
    path = out / grid_file_name(grid.stamp_ns, tokens)
    write_grid_file(path, grid.labels, grid_info(msg), **extra)
    return path


def grid_from_topic(topic: str, timeout_s: float) -> tuple[np.ndarray, GridGeometry, GridInfo]:
    """(labels, geometry, info) of the first SemanticVoxelGrid on ``topic``; ToolError on timeout or bad sizes."""
    from gsdocc_ros.ros.conversions import grid_from_message

    msg = next(receive_grids(topic, count=1, timeout_s=timeout_s), None)
    if msg is None:
        raise ToolError(f"no SemanticVoxelGrid on {topic} within {timeout_s} s")
    try:
        grid = grid_from_message(msg)
    except ValueError as error:
        raise ToolError(f"grid from {topic} refused: {error}") from None
    return grid.labels, grid.geometry, grid_info(msg)


