"""Export the network's frame step to ONNX for ONNX Runtime, OpenVINO and TensorRT.

  gsdocc export --checkpoint CKPT --out DIR [--input-size 256x704|512x1408] [--precision fp32|fp16] [--opset N]
                [--tensorrt] [--force]

Writes DIR/gsdocc_step.onnx (static shapes, batch one, the temporal history as inputs and outputs) and
DIR/manifest.json (inputs/outputs with shapes and meaning, the checkpoint's sha256, the weights' fingerprint,
opset and exporter versions). The graph is checked with onnx.checker and shape inference before the manifest
is written. --tensorrt then builds the TensorRT engine for this machine's GPU beside it. Without --checkpoint,
--random-weights exports the seeded random weights the tests and benchmarks use.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gsdocc_ros.errors import ToolError
from gsdocc_ros.model.checkpoint_file import check_checkpoint_file
from gsdocc_ros.pipeline.choices import DEFAULT_OPSET, EXPORT_PRECISIONS

VERB = "export"
OFFICIAL_SIZES = ("256x704", "512x1408")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `gsdocc export`."""
    parser = subparsers.add_parser(VERB, help="export the network's frame step to ONNX (+ manifest)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="GSD-OCC checkpoint (official or own format)")
    weights.add_argument("--random-weights", action="store_true", help="export seeded random weights (tests only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-weights (default 0)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow arbitrary unpickling of the checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--input-size", choices=OFFICIAL_SIZES, default=OFFICIAL_SIZES[0],
                        help="network input HxW (default %(default)s)")
    parser.add_argument("--precision", choices=EXPORT_PRECISIONS, default="fp32",
                        help="graph precision; fp16 is for GPUs (default %(default)s)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument("--tensorrt", action="store_true",
                        help="also build the TensorRT engine for this machine's GPU (needs CUDA and tensorrt)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing export in --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, check, write the manifest; the last line says what was written where."""
    if args.checkpoint is not None:
        check_checkpoint_file(args.checkpoint)
    if args.opset < 18:
        raise ToolError(f"--opset {args.opset}: the exporter needs 18 or newer")
    if args.out.exists() and not args.out.is_dir():
        raise ToolError(f"--out {args.out} exists and is not a folder")
    from gsdocc_ros.deploy.export import export_step_graph
    from gsdocc_ros.deploy.manifest import GRAPH_NAME, MANIFEST_NAME, file_sha256
    from gsdocc_ros.model.config import ModelConfig
    from gsdocc_ros.pipeline.runner import load_model

    if not args.force and any((args.out / name).exists() for name in (GRAPH_NAME, MANIFEST_NAME)):
        raise ToolError(f"{args.out} already holds an export; pass --force to overwrite it")
    height, width = (int(n) for n in args.input_size.split("x"))
    started = time.perf_counter()
    try:
        model, weights = load_model(args.checkpoint, ModelConfig.for_input_size(height, width),
                                    allow_random_weights=args.random_weights, trust_pickle=args.trust_pickle,
                                    seed=args.seed)
        checkpoint_sha = file_sha256(args.checkpoint) if args.checkpoint else None
        manifest = export_step_graph(model, args.out, weights, checkpoint_sha, args.precision, args.opset)
        if args.tensorrt:
            from gsdocc_ros.deploy.tensorrt import build_engine

            engine = build_engine(args.out / manifest.graph, fp16=args.precision == "fp16")
            print(f"TensorRT engine: {engine}")
    except (ValueError, FileNotFoundError) as error:
        raise ToolError(str(error)) from None
    print(f"checked graph {args.out / manifest.graph} (opset {manifest.opset}, {manifest.precision}, "
          f"{args.input_size}) and {args.out / MANIFEST_NAME} written in {time.perf_counter() - started:.0f} s")
    return 0
