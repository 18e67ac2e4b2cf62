"""Run the whole pipeline once, end to end, and show what came out: the job behind `make demo`.

  gsdocc demo [--checkpoint C] [--bag B] [--out DIR] [--device auto|cpu|cuda] [--rate R] [--keyframes N]
              [--backend NAME --graph-dir DIR]

Without --bag, a short six-camera bag of a synthetic street (nuScenes-like cameras, a moving ego, tf) is
generated into OUT, with the scene's ground-truth occupancy. The occupancy node is started as a separate process
(`gsdocc node`; on seeded random weights, announced as such, when no --checkpoint is given), and once it
subscribes the bag is replayed into it. Meanwhile its grids are recorded and its /diagnostics read. Finally each
grid is drawn on one picture, OUT/pictures/<token>.png: the six camera images, the prediction (top-down and 3D),
the synthetic street's ground truth beside it (what a trained model should approach; on random weights expect a
nearly uniform grid instead), and a line saying how to read it. A summary is printed and written to
OUT/summary.json: camera sets played and received, grids out, latency, the node's stages in words, the machine's
load, where the files are.

Rate: the node infers on sets 0.5 s apart (keyframe cadence). On CUDA the bag plays in real time; on CPU it plays
20 s per set, slowly enough that every keyframe is inferred (--rate overrides). A CPU inference took 8.7 s on two
cores at a load of 0.4, 12-13.5 s at 1.2-2.8 and 26.5 s at 3.8 (other jobs on the cores); the summary gives the
load each run saw. Latency is measured here, on the wall clock: from the arrival of the last image of a camera set
to the arrival of its grid, so it holds the node's processing plus any queueing behind earlier sets (the stage
set_wait).

OUT (default out/demo) is the demo's own folder: a previous demo's results there are replaced; a folder that
holds anything else is refused. All processes are stopped on exit, also after an error or Ctrl-C; the exit code
is non-zero when no grid came out.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import image_topic
from gsdocc_ros.io.bags import open_bag
from gsdocc_ros.model.checkpoint_file import check_checkpoint_file
from gsdocc_ros.pipeline.choices import BACKENDS
from gsdocc_ros.pipeline.frames import KEY_CAMERA

VERB = "demo"


RANDOM_WEIGHTS_BANNER = "\n".join(["*" * 92] + [f"*** {line:<84} ***" for line in (
    "NO CHECKPOINT: the node runs on seeded RANDOM WEIGHTS. The whole pipeline is real,",
    "but the occupancy it outputs is meaningless. For real output give a checkpoint:",
    "  make demo CHECKPOINT=/path/gsdocc.pth      (or: gsdocc demo --checkpoint PATH)")] + ["*" * 92])


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc demo``."""
    parser = subparsers.add_parser(VERB, help="run the whole pipeline on a generated (or given) bag and show it",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="GSD-OCC checkpoint (default: random weights, announced)")
    parser.add_argument("--bag", type=Path, help="bag to replay (default: a generated synthetic street)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="demo folder (default: %(default)s)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the node runs the network (default: cuda when available)")
    parser.add_argument("--rate", type=float, help="replay speed factor (default: 1 on CUDA; on CPU slow enough that "
                                                   "every keyframe is inferred)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="runtime of the node's network (default torch; others need --graph-dir)")
    parser.add_argument("--graph-dir", type=Path, help="`gsdocc export` folder for --backend other than torch")
    parser.add_argument("--keyframes", type=int, default=4,
                        help="camera sets (0.5 s apart) of the synthetic bag (default: %(default)s)")
    parser.set_defaults(func=run)


def check_bag(bag: Path) -> None:
    """ToolError unless ``bag`` is a bag rosbags opens that holds the key camera's images the node needs."""
    with contextlib.closing(open_bag(bag)) as reader:
        if image_topic(KEY_CAMERA) not in reader.topics:
            raise ToolError(f"bag {bag} has no {image_topic(KEY_CAMERA)}; the node needs the six "
                            "/CAM_*/image_rect_compressed topics (see gsdocc nuscenes-to-bag)")


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when grids came out, ToolError (exit 2) naming what is wrong otherwise.

    Every argument is checked, and OUT made ready, before anything is printed or torch is imported.
    """
    if args.checkpoint is not None:
        check_checkpoint_file(args.checkpoint)
    if args.rate is not None and not args.rate > 0:
        raise ToolError(f"--rate must be positive, got {args.rate}")
    if args.backend != "torch" and (args.graph_dir is None or not args.graph_dir.is_dir()):
        raise ToolError(f"--backend {args.backend} needs --graph-dir, an existing `gsdocc export` folder")
    if args.keyframes < 1:
        raise ToolError(f"--keyframes must be at least 1, got {args.keyframes}")
    if args.bag is not None and args.out.resolve() in args.bag.resolve().parents:
        raise ToolError(f"--bag {args.bag} lies inside --out {args.out}, whose previous results the demo replaces; "
                        "copy the bag elsewhere first")
    if args.bag is not None:
        check_bag(args.bag)
    from gsdocc_ros.ros.demo import prepare_out, resolve_device, run_demo

    prepare_out(args.out)
    device = resolve_device(args.device)
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    summary = run_demo(args.out, args.checkpoint, args.bag, device, args.rate, args.keyframes, args.backend,
                       args.graph_dir)
    print_summary(summary, args.out)
    return 0


def print_summary(summary: dict, out: Path) -> None:
    """The short report on stdout, times beside the load they were measured under and the node's stages in words;
    the last line says what was written where."""
    latency, machine = summary["latency_ms"], summary["machine"]
    (start, *_), (end, *_) = machine["load_at_start"], machine["load_at_end"]
    under = f"on {machine['cpu_count']} cores at load {start:.1f} -> {end:.1f} (1-min average, replay start -> end)"
    print(f"weights: {summary['weights']}  device: {summary['device']}  replay rate: {summary['rate']:.3g}")
    print(f"camera sets: {summary['camera_sets_played']} played of {summary['camera_sets_in_bag']} in the bag, "
          f"{summary['camera_sets_received_by_node'] if summary['camera_sets_received_by_node'] is not None else '?'} "
          f"received by the node; grids out: {summary['grids_out']}")
    processing = summary["node_processing_ms"]
    if processing["mean"] is not None:
        print(f"node processing per grid (its stages, without queueing): mean {processing['mean'] / 1e3:.2f} s, "
              f"min {processing['min'] / 1e3:.2f} s, max {processing['max'] / 1e3:.2f} s, {under}")
    if latency["mean"] is not None:
        print(f"latency (last image of a set -> its grid, wall clock: processing plus queueing behind earlier sets): "
              f"mean {latency['mean'] / 1e3:.2f} s, min {latency['min'] / 1e3:.2f} s, max {latency['max'] / 1e3:.2f} s")
    stages, described = summary["node_stages_ms_last_grid"], summary["node_stage_descriptions"]
    if stages:
        print("node stages of the last grid:")
        for stage, ms in stages.items():
            print(f"  {stage:<14}{ms:>9.0f} ms  {described.get(stage, '(not described)')}")
    pictures = sum(1 for g in summary["grids"] if "picture" in g)
    print(f"wrote {out / 'summary.json'}, {summary['grids_out']} grids in {out / 'grids'}, {pictures} pictures in "
          f"{out / 'pictures'} (node log: {out / 'node.log'}; took {summary['wall_s']:.0f} s)")


