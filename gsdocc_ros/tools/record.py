"""Record SemanticVoxelGrid messages as one .npz per grid, named by nuScenes sample token, for `gsdocc eval score`.

  gsdocc record [--topic /gsdocc/occupancy] --out DIR [--bag BAG] [--count N] [--timeout S] [--best-effort] [--force]

Each grid becomes DIR/<name>.npz: `semantics` uint8 (X, Y, Z) in Occ3D order; what the message says it shows:
`source` (model and weights, e.g. random weights), `frame_id`, `stamp_ns` and `class_names` (strings as numpy
unicode, so `gsdocc render` can caption the picture); `confidence` / `camera_mask` when the message carries them;
and with --bag `ego_pose` (ego -> map at the grid's stamp, from the bag's /tf) and `lidar_to_ego` (from its
/tf_static) for the RayIoU origins of `gsdocc eval score --metric rayiou`; written to a temporary name, then renamed.
<name> is the sample token when --bag is given and the grid's stamp (its CAM_FRONT stamp) matches a message of
the bag's /gsdocc/sample_token topic (std_msgs/String, one per keyframe, bag time = that keyframe's CAM_FRONT stamp, as
`gsdocc nuscenes-to-bag` writes it); otherwise the stamp in nanoseconds. Recording stops after N grids, after
S seconds, or on Ctrl-C. Messages with inconsistent sizes are refused with a warning and not written.

Subscribed: TOPIC (gsdocc_ros/msg/SemanticVoxelGrid), reliable (or best effort), keep last 50.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import SAMPLE_TOKEN_TOPIC

VERB = "record"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc record``."""
    parser = subparsers.add_parser(VERB, help="save SemanticVoxelGrid messages as <sample token>.npz files",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", default="/gsdocc/occupancy", help="grid topic (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz files (created if absent)")
    parser.add_argument("--bag", type=Path, help=f"bag with {SAMPLE_TOKEN_TOPIC} to name files by sample token")
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
    from gsdocc_ros.io.bag_poses import BagPoses
    from gsdocc_ros.io.sample_tokens import TokenMap
    from gsdocc_ros.ros.grid_recorder import receive_grids, save_message

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
