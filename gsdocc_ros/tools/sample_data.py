"""Build the sample-data folder the test suite reads (../shared/data) from your nuScenes and Occ3D download.

  gsdocc sample-data --nuscenes DATAROOT [--version v1.0-mini] [--occ3d OCC3D_DIR] --out FOLDER [--force]

DATAROOT is an unpacked nuScenes download (samples/, VERSION/*.json, LICENSE); OCC3D_DIR the Occ3D-nuScenes folder
that holds gts/<scene>/<sample token>/labels.npz. Written (about 2 MiB; 4 MiB with scene-0003):
nuscenes_sample/scene-0061_ca9a282c (one keyframe: six JPEGs, the LiDAR scan, calib.json, the tables cut to that
sample), nuscenes_sample/mini_val_poses (poses.json: calibration and poses of the 81 keyframes of scene-0103 and
scene-0916), the nuScenes licence, and occ3d_sample/labels.npz. nuscenes_sample/scene-0003_fd842039 is a
v1.0-trainval keyframe: with --version v1.0-trainval (which holds the mini scenes too) it is written as well;
otherwise one line names the tests that need it. Point the tests at the folder with GSDOCC_SAMPLE_DATA=FOLDER. The
data stays under the nuScenes licence (CC BY-NC-SA 4.0, non-commercial): never commit it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gsdocc_ros.errors import ToolError

VERB = "sample-data"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc sample-data``."""
    parser = subparsers.add_parser(VERB, help="build the tests' sample-data folder from a nuScenes / Occ3D download",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nuscenes", type=Path, required=True, metavar="DATAROOT",
                        help="nuScenes root (holds samples/, VERSION/ and LICENSE)")
    parser.add_argument("--version", default="v1.0-mini",
                        help="nuScenes version folder; v1.0-trainval also gives scene-0003 (default: %(default)s)")
    parser.add_argument("--occ3d", type=Path, metavar="OCC3D_DIR",
                        help="Occ3D-nuScenes folder holding gts/<scene>/<token>/labels.npz")
    parser.add_argument("--out", type=Path, required=True, help="sample folder to create")
    parser.add_argument("--force", action="store_true", help="replace an existing folder at --out")
    parser.set_defaults(func=run)


def say(line: str) -> None:
    """Progress and notes: one line on stderr."""
    print(f"gsdocc {VERB}: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc sample-data``; returns 0 (parts it cannot build are named on stderr), or raises ToolError."""
    if not args.nuscenes.is_dir():
        raise ToolError(f"--nuscenes {args.nuscenes} is not a directory (pass the unpacked nuScenes download, which "
                        f"holds samples/, {args.version}/ and LICENSE)")
    from gsdocc_ros.io.sample_folder import build

    for line in build(args.nuscenes, args.version, args.occ3d, args.out, args.force, say):
        say(line)
    print(f"wrote {args.out}; run the tests on it with GSDOCC_SAMPLE_DATA={args.out.resolve()}")
    return 0
