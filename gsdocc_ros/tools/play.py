"""Replay a ROS 2 bag into the live ROS graph with rclpy, for installs without `ros2 bag`.

  gsdocc play BAG [--rate R] [--start-offset S] [--loop] [--topics T ...] [--clock] [--clock-rate HZ] [--delay S]

Each message is published as its recorded CDR bytes at its bag time scaled by --rate (2 = twice as fast),
starting --start-offset seconds into the bag. --loop starts over at the end until Ctrl-C. --clock publishes
rosgraph_msgs/Clock on /clock at --clock-rate Hz (bag time as sim time, for nodes with use_sim_time); at each loop
the clock jumps back to the start. --delay waits before the first message (time for subscribers to be discovered).
Every topic is published reliable; /tf_static and topics recorded transient-local are latched (see
gsdocc_ros/ros/bag_player.py for the QoS of each topic).
"""

from __future__ import annotations

import argparse
from pathlib import Path

VERB = "play"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc play``."""
    parser = subparsers.add_parser(VERB, help="replay a ROS 2 bag with rclpy (no rosbag2 needed)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", type=Path, help="bag directory (with metadata.yaml)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: %(default)s)")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S", help="start S seconds into the bag")
    parser.add_argument("--loop", action="store_true", help="start over at the end until Ctrl-C")
    parser.add_argument("--topics", nargs="+", default=(), metavar="T", help="play only these topics")
    parser.add_argument("--clock", action="store_true", help="publish /clock (bag time) for use_sim_time")
    parser.add_argument("--clock-rate", type=float, default=40.0, metavar="HZ",
                        help="/clock publication rate (default: %(default)s)")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S",
                        help="wait S seconds before the first message (subscriber discovery)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc play``; returns 0 (also when stopped with Ctrl-C), or raises ToolError naming what is wrong."""
    from gsdocc_ros.ros.bag_player import BagPlayer, BagSource, PlayOptions

    options = PlayOptions(rate=args.rate, start_offset_s=args.start_offset, loop=args.loop, clock=args.clock,
                          clock_rate_hz=args.clock_rate, delay_s=args.delay)
    source = BagSource(args.bag, args.topics)
    import rclpy  # once the options and the bag are checked
    from rclpy.signals import SignalHandlerOptions

    try:
        # No rclpy signal handlers: Ctrl-C is only a KeyboardInterrupt here, so no publish can meet a context that
        # the handler has already shut down; the player stops between two messages.
        with rclpy.init(signal_handler_options=SignalHandlerOptions.NO):
            node = rclpy.create_node("gsdocc_play")
            player = BagPlayer(node, source, options)
            try:
                player.run()
            except KeyboardInterrupt:
                player.stop()
            node.destroy_node()
    finally:
        source.close()
    stats = player.stats
    print(f"played {stats.messages} messages on {len(stats.published)} topics ({stats.loops} complete passes, "
          f"{stats.clock_ticks} /clock ticks) from {args.bag}")
    return 0


