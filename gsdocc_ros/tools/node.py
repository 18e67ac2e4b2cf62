"""`gsdocc node`: run the occupancy node without `ros2 run` (pip-only ROS 2).

Everything after the verb goes to ROS, e.g.
    gsdocc node --ros-args --params-file config/gsdocc.yaml -p device:=cpu -p checkpoint:=gsdocc.pth
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `gsdocc node`."""
    parser = subparsers.add_parser("node", help="run the GSD-OCC occupancy node", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=run, forwarded=[])  # every further argument is forwarded to ROS


def run(args: argparse.Namespace) -> int:
    """Start the node with the given ROS arguments; returns its exit code."""
    from gsdocc_ros.ros.node import main  # imports rclpy: only when the verb is used

    return main(["gsdocc_node", *args.forwarded], prog="gsdocc node")
