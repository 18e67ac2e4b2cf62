"""The `gsdocc` command: one subcommand per module of gsdocc_ros.tools."""

from __future__ import annotations

import argparse
import importlib
import sys

from gsdocc_ros.errors import ToolError

# Subcommand modules, in the order `gsdocc --help` lists them. Each exposes
# add_parser(subparsers) (registering its parser with func=run) and run(args) -> int.
SUBCOMMANDS: tuple[str, ...] = (
    "node", "checkpoint_cmd", "eval_cmd", "bench", "record",
    "nuscenes_to_bag", "play", "render", "demo", "export_cmd", "sample_data",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="gsdocc",
        description="GSD-OCC camera-only 3D semantic occupancy: ROS 2 node, replay, evaluation and tools.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"gsdocc_ros.tools.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one subcommand; user errors become one line on stderr."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only a verb that forwards arguments (e.g. `node` to ROS) accepts what argparse did not know
        if not hasattr(args, "forwarded"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.forwarded = [*args.forwarded, *extra]
    try:
        return int(args.func(args) or 0)
    except ToolError as error:
        print(f"gsdocc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gsdocc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # `python -m gsdocc_ros.tools.cli`
    sys.exit(main())
