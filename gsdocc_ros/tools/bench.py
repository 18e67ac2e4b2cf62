"""Measure the node's inference step stage by stage on one device, precision and input size.

  gsdocc bench [--device cpu|cuda] [--precision fp32|fp16|bf16] [--input-size 256x704|512x1408]
               [--runs N] [--warmup N] [--json OUT] [--checkpoint CKPT]

Each run is what the node does with one camera set: decode the six real nuScenes JPEGs (image_decode.decode_image),
OccupancyRunner.step (preprocessing, the network stage by stage, argmax and the device -> host copy, the grid),
then the SemanticVoxelGrid message and the serialised MarkerArray. The output messages are built from the real
Occ3D ground-truth grid (39,092 drawn voxels) so their cost is that of a realistic scene, whatever random weights
predict. Stage times are medians over the warm runs with their interquartile range; on CUDA each stage boundary
synchronises the device, and the whole step is timed again in separate runs without those synchronisations.

Also reported: the network's FLOPs (torch.utils.flop_counter over one step, the sparse BEV splat counted by its
non-zeros), its achieved FLOP rate next to a large matrix product timed on the same device in the same run,
peak memory (process RSS on CPU, allocated memory on CUDA), the operations that would make a GPU's host wait,
and the period between sets as the node runs them. Random seeded weights unless --checkpoint: timings do not
depend on the weights' values. The A/B pairs and the targets of the performance work are scripts of
benchmarks/ (ab_pairs.py, targets.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gsdocc_ros.benchmark.config import (DEFAULT_LABELS, DEFAULT_SCENE, OFFICIAL_SIZES, BenchConfig, count,
                                         input_size, positive)
from gsdocc_ros.errors import ToolError
from gsdocc_ros.model.checkpoint_file import check_checkpoint_file
from gsdocc_ros.pipeline.choices import BACKENDS, PRECISION_NAMES, PREPROCESSORS, SPLATS

VERB = "bench"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc bench``."""
    parser = subparsers.add_parser(VERB, help="time the inference step stage by stage on one device",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device to measure (default cpu)")
    parser.add_argument("--precision", choices=PRECISION_NAMES, default="fp32",
                        help="fp32, or fp16/bf16 autocast (fp16 on CUDA only); default fp32")
    parser.add_argument("--input-size", type=input_size, default=(256, 704), metavar="HxW",
                        help=f"network input size; the official ones are {' and '.join(OFFICIAL_SIZES)} "
                             "(default 256x704)")
    parser.add_argument("--runs", type=positive, default=3, help="timed runs (default 3)")
    parser.add_argument("--warmup", type=count, default=1,
                        help="warm-up runs after the FLOP-counting run, which is never timed (default 1)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="write the full results here (default out/bench-<device>-<precision>-<HxW>.json)")
    parser.add_argument("--force", action="store_true", help="overwrite the JSON file if it exists")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="CKPT",
                        help="GSD-OCC weights; without it, seeded random weights (timings do not depend on them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--scene", type=Path, default=DEFAULT_SCENE,
                        help="nuscenes_sample scene folder with calib.json and six JPEGs (default scene-0061)")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS,
                        help="Occ3D labels.npz the output messages are built from (default: the real "
                             "occ3d_sample, 39,092 drawn voxels); pass 'predicted' to use the model's output")
    parser.add_argument("--decoder", choices=("simplejpeg", "pillow"), default=None,
                        help="JPEG decoder of the step (default: what the node uses, simplejpeg where installed)")
    parser.add_argument("--preprocess", choices=PREPROCESSORS, default="auto",
                        help="preprocessing path of the runner (default auto: torch on CUDA, exact Pillow on CPU)")
    parser.add_argument("--splat", choices=SPLATS, default="auto",
                        help="BEV pooling of the runner (default auto: scatter on CUDA, cached indices on CPU)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="keep the conv weights contiguous (the runner's default is channels-last)")
    parser.add_argument("--compile", choices=("default", "reduce-overhead", "max-autotune"), default=None,
                        help="torch.compile the static-shape stages with this mode after the FLOP count "
                             "(reduce-overhead: CUDA graphs); the first warm-up step compiles")
    parser.add_argument("--threads", type=positive, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--backend", type=_backends, default=["torch"], metavar="NAME[,NAME]",
                        help="runtimes to compare with torch, interleaved A/B (gsdocc_ros.deploy.bench_backends): "
                             f"{', '.join(BACKENDS)} (default torch: the stage-by-stage bench)")
    parser.add_argument("--graph-dir", type=Path, default=None, metavar="DIR",
                        help="`gsdocc export` folder the graph backends run (same --input-size and weights)")
    parser.set_defaults(func=run)


def _backends(text: str) -> list[str]:
    """'onnxruntime,openvino' -> the backend names, each one of BACKENDS."""
    names = text.split(",")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    return names


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc bench``: check the arguments, measure, print the table and write the JSON."""
    if args.precision == "fp16" and args.device != "cuda":
        raise ToolError("--precision fp16 needs --device cuda; use fp32 or bf16 on CPU")
    if args.compile is not None and args.warmup < 1:
        raise ToolError("--compile needs --warmup >= 1: the first compiled step compiles and must not be timed")
    if args.checkpoint is not None:
        check_checkpoint_file(args.checkpoint)
    if not (args.scene / "calib.json").is_file():
        raise ToolError(f"--scene: {args.scene} has no calib.json (expected a nuscenes_sample scene folder)")
    labels = None if str(args.labels) == "predicted" else args.labels
    if labels is not None and not labels.is_file():
        raise ToolError(f"--labels: no such file: {labels} (pass 'predicted' to use the model's output)")
    height, width = args.input_size
    out = args.json or Path("out") / f"bench-{args.device}-{args.precision}-{height}x{width}.json"
    if out.exists() and not args.force:
        raise ToolError(f"{out} exists; pass --force to overwrite it")
    if args.backend != ["torch"] and args.graph_dir is None:
        raise ToolError("--backend other than torch needs --graph-dir (a `gsdocc export` folder)")
    import torch

    from gsdocc_ros.benchmark.measure import bench
    from gsdocc_ros.benchmark.report import format_table
    from gsdocc_ros.ros.image_decode import DEFAULT_JPEG_DECODER

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ToolError("--device cuda: CUDA is not available in this torch build or on this machine")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.backend != ["torch"]:
        from gsdocc_ros.deploy.bench_backends import compare_backends, format_backends

        try:
            result = compare_backends(args)
        except ValueError as error:
            raise ToolError(str(error)) from None
        print(format_backends(result))
        return _write(result, out)
    config = BenchConfig(device=args.device, precision=args.precision, input_size=args.input_size, runs=args.runs,
                         warmup=args.warmup, checkpoint=args.checkpoint, seed=args.seed, scene=args.scene,
                         labels=labels, decoder=args.decoder or DEFAULT_JPEG_DECODER, preprocess=args.preprocess,
                         splat=args.splat, channels_last=not args.no_channels_last, compile=args.compile,
                         threads=args.threads, quiet=args.quiet)
    result = bench(config)
    print(format_table(result))
    return _write(result, out)


def _write(result: dict, out: Path) -> int:
    """Write the result JSON and say where; the exit code 0."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0
