"""Inspect GSD-OCC checkpoints and convert them to the project's own format.

  gsdocc checkpoint check PATH [--trust-pickle]
  gsdocc checkpoint convert IN OUT [--trust-pickle] [--force]

`check` exits 0 when the file matches the model key for key and shape for shape; otherwise it lists
the missing, unexpected and mis-shaped keys and exits non-zero. Files are read with weights_only=True;
--trust-pickle allows arbitrary unpickling (only for files whose source you trust).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gsdocc_ros.errors import ToolError, require_folder
from gsdocc_ros.model.checkpoint_file import check_checkpoint_file

VERB = "checkpoint"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc checkpoint {check,convert}``."""
    parser = subparsers.add_parser(VERB, help="check or convert GSD-OCC checkpoints", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="{check,convert}")
    check = actions.add_parser("check", help="report a checkpoint's layout and whether it matches the model")
    check.add_argument("path", type=Path, help="checkpoint file (official mmcv/EMA layout, plain or own format)")
    convert = actions.add_parser("convert", help="write a checked checkpoint in the project's own format")
    convert.add_argument("input", type=Path, help="checkpoint to read")
    convert.add_argument("output", type=Path, help="own-format file to write")
    convert.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    for sub in (check, convert):
        sub.add_argument("--trust-pickle", action="store_true",
                         help="allow arbitrary unpickling (can run code from the file); only for trusted files")
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace) -> int:
    """Print what the file holds; exit 0 only on a strict match."""
    check_checkpoint_file(args.path)
    from gsdocc_ros.model.checkpoint import check_checkpoint

    report = check_checkpoint(args.path, trust_pickle=args.trust_pickle)
    print(report.describe(limit=50))
    if not report.ok:
        raise ToolError(f"{args.path} does not match the model ({len(report.missing)} missing, "
                        f"{len(report.unexpected)} unexpected, {len(report.mismatched)} wrong shape)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    """Check the input strictly, then write the own format atomically."""
    check_checkpoint_file(args.input)
    if args.output.exists() and not args.force:
        raise ToolError(f"{args.output} exists; pass --force to overwrite it")
    require_folder(args.output.parent, "output")
    from gsdocc_ros.model.checkpoint import check_checkpoint, read_checkpoint, save_checkpoint

    checkpoint = read_checkpoint(args.input, trust_pickle=args.trust_pickle)
    report = check_checkpoint(checkpoint)
    if not report.ok:
        print(report.describe(limit=50))
        raise ToolError(f"{args.input} does not match the model; nothing written")
    save_checkpoint(args.output, checkpoint.state_dict, checkpoint.model_config)
    print(f"wrote {args.output} ({report.num_keys} keys, {report.num_values:,} values, {report.form} form, "
          f"from the {report.layout} layout)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc checkpoint check|convert``; returns 0, or raises ToolError (CheckpointError is one; exit 2)
    naming what is wrong."""
    return _check(args) if args.action == "check" else _convert(args)
