"""Record SemanticVoxelGrid messages as one .npz per grid, named by nuScenes sample token, for `gsdocc eval score`.

  gsdocc record [--topic /gsdocc/occupancy] --out DIR [--bag BAG] [--count N] [--timeout S] [--best-effort] [--force]

Each grid becomes DIR/<name>.npz: `semantics` uint8 (X, Y, Z) in Occ3D order, `stamp_ns`, and `confidence` /
`camera_mask` when the message carries them, and with --bag `ego_pose` (ego -> map at the grid's stamp, from the
bag's /tf) and `lidar_to_ego` (from its /tf_static) for the RayIoU origins of `gsdocc eval score --metric rayiou`;
written to a temporary name, then renamed. <name> is the sample
token when --bag is given and the grid's stamp (its CAM_FRONT stamp) matches a message of the bag's
/gsdocc/sample_token topic (std_msgs/String, one per keyframe, bag time = that keyframe's CAM_FRONT stamp, as
`gsdocc nuscenes-to-bag` writes it); otherwise the stamp in nanoseconds. Recording stops after N grids, after
S seconds, or on Ctrl-C. Messages with inconsistent sizes are refused with a warning and not written.

Subscribed: TOPIC (gsdocc_ros/msg/SemanticVoxelGrid), reliable (or best effort), keep last 50.
"""

from __future__ import annotations

import argparse
import bisect
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gsdocc_ros.tools.bag_poses import BagPoses
from gsdocc_ros.tools.cli import ToolError
from gsdocc_ros.tools.grid_files import write_grid_file

VERB = "record"
TOKEN_TOPIC = "/gsdocc/sample_token"
"""Topic of the bag that maps CAM_FRONT stamps (bag time) to nuScenes sample tokens."""
QUEUE_DEPTH = 50
"""Subscription history depth: grids are large, but none should be lost while a file is written."""


class TokenMap:
    """CAM_FRONT stamp (ns) -> sample token, read from a bag's /gsdocc/sample_token topic; nearest within a tolerance."""

    def __init__(self, tokens: dict[int, str], tolerance_ns: int = 1_000_000) -> None:
        self._stamps = sorted(tokens)
        self._tokens = tokens
        self.tolerance_ns = tolerance_ns

    def __len__(self) -> int:
        return len(self._stamps)

    @classmethod
    def from_bag(cls, bag: Path, topic: str = TOKEN_TOPIC) -> TokenMap:
        """Read every message of ``topic`` in ``bag`` (rosbag2 folder or ROS 1 bag) with rosbags."""
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        if not bag.exists():
            raise ToolError(f"bag {bag} does not exist")
        tokens: dict[int, str] = {}
        try:
            with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
                connections = [c for c in reader.connections if c.topic == topic]
                if not connections:
                    raise ToolError(f"bag {bag} has no {topic} topic (topics: "
                                    f"{', '.join(sorted({c.topic for c in reader.connections})) or 'none'})")
                for connection, timestamp, raw in reader.messages(connections=connections):
                    tokens[int(timestamp)] = str(reader.deserialize(raw, connection.msgtype).data)
        except ToolError:
            raise
        except Exception as error:  # rosbags raises its own reader errors for unreadable bags
            raise ToolError(f"bag {bag}: cannot read {topic} ({type(error).__name__}: {error})") from None
        return cls(tokens)

    def lookup(self, stamp_ns: int) -> str | None:
        """The token whose CAM_FRONT stamp is nearest ``stamp_ns``, if within the tolerance."""
        i = bisect.bisect_left(self._stamps, stamp_ns)
        near = [s for s in self._stamps[max(i - 1, 0):i + 1] if abs(s - stamp_ns) <= self.tolerance_ns]
        return self._tokens[min(near, key=lambda s: abs(s - stamp_ns))] if near else None


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


SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What a sample token may look like to name a file (nuScenes tokens are 32 hex digits)."""


def grid_file_name(stamp_ns: int, tokens: TokenMap | None) -> str:
    """``<token>.npz`` when the stamp maps to a sample token, else ``<stamp_ns>.npz``."""
    token = tokens.lookup(stamp_ns) if tokens is not None else None
    if token is not None and not SAFE_TOKEN.fullmatch(token):  # a token from a bag must not name another folder
        raise ToolError(f"sample token {token!r} from the bag is not a plain file name (letters, digits, - and _)")
    return f"{token or stamp_ns}.npz"


def save_message(msg: Any, out: Path, tokens: TokenMap | None, poses: BagPoses | None = None) -> Path:
    """Write one SemanticVoxelGrid to OUT/<name>.npz (strict size checks first), with its pose when known."""
    from gsdocc_ros.ros.conversions import grid_from_message

    grid = grid_from_message(msg)  # ValueError naming the field when sizes or values disagree
    extra: dict[str, np.ndarray] = {"stamp_ns": np.int64(grid.stamp_ns)}
    if poses is not None and poses.lidar_to_ego is not None and msg.header.frame_id == poses.ego_frame:
        ego_pose = poses.lookup(grid.stamp_ns)
        if ego_pose is not None:
            extra.update(ego_pose=ego_pose, lidar_to_ego=poses.lidar_to_ego)
    if grid.confidence is not None:
        extra["confidence"] = grid.confidence
    if grid.camera_mask is not None:
        extra["camera_mask"] = grid.camera_mask.astype(np.uint8)
    path = out / grid_file_name(grid.stamp_ns, tokens)
    write_grid_file(path, grid.labels, **extra)
    return path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc record``."""
    parser = subparsers.add_parser(VERB, help="save SemanticVoxelGrid messages as <sample token>.npz files",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", default="/gsdocc/occupancy", help="grid topic (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz files (created if absent)")
    parser.add_argument("--bag", type=Path, help=f"bag with {TOKEN_TOPIC} to name files by sample token")
    parser.add_argument("--count", type=int, help="stop after this many grids (default: until Ctrl-C or timeout)")
    parser.add_argument("--timeout", type=float, help="stop after this many seconds")
    parser.add_argument("--best-effort", action="store_true", help="subscribe best effort instead of reliable")
    parser.add_argument("--force", action="store_true", help="write into an OUT that already holds .npz files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Record until --count, --timeout or Ctrl-C; ToolError (exit 2) when fewer grids than asked arrived."""
    if args.count is not None and args.count <= 0:
        raise ToolError(f"--count must be positive, got {args.count}")
    if args.timeout is not None and args.timeout <= 0:
        raise ToolError(f"--timeout must be positive, got {args.timeout}")
    if args.out.exists() and not args.out.is_dir():
        raise ToolError(f"--out {args.out} exists and is not a folder")
    if args.out.is_dir() and any(args.out.glob("*.npz")) and not args.force:
        raise ToolError(f"{args.out} already holds .npz files; pass --force to add to them (same names are replaced)")
    tokens = TokenMap.from_bag(args.bag) if args.bag is not None else None
    poses = BagPoses.from_bag(args.bag) if args.bag is not None else None
    if tokens is not None:
        print(f"{len(tokens)} sample tokens and {len(poses)} ego poses from {args.bag}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    refused: list[str] = []
    try:
        for msg in receive_grids(args.topic, args.count, args.timeout, reliable=not args.best_effort):
            try:
                written.append(save_message(msg, args.out, tokens, poses))
            except ValueError as error:
                refused.append(str(error))
                print(f"warning: grid refused: {error}", file=sys.stderr)
                continue
            print(f"saved {written[-1].name}", file=sys.stderr)
    except KeyboardInterrupt:
        print("stopped (Ctrl-C)", file=sys.stderr)
    unique = len(set(written))
    by_token = sum(1 for p in set(written) if not p.stem.isdigit())
    summary = (f"{len(written)} grids to {unique} files in {args.out} ({by_token} named by sample token"
               f"{f', {len(refused)} refused' if refused else ''})")
    if args.count is not None and len(written) + len(refused) < args.count:
        raise ToolError(f"only {len(written) + len(refused)} of {args.count} grids arrived on {args.topic} within "
                        f"{args.timeout} s; wrote {summary}")
    if not written:
        raise ToolError(f"no grid written from {args.topic}" + (f" ({len(refused)} refused)" if refused else ""))
    print(f"wrote {summary}")
    return 0
