"""Run the whole pipeline once, end to end, and show what came out: the job behind `make demo`.

  gsdocc demo [--checkpoint C] [--bag B] [--out DIR] [--device auto|cpu|cuda] [--rate R] [--keyframes N]
              [--backend NAME --graph-dir DIR]

Without --bag, a short six-camera bag of a synthetic street (`synthetic_scene`: nuScenes-like cameras, a moving
ego, tf) is generated into OUT, with the scene's ground-truth occupancy. The occupancy node is started as a
separate process (`gsdocc node`; on seeded random weights, announced as such, when no --checkpoint is given),
and once it subscribes the bag is replayed into it (`gsdocc play`'s player). Meanwhile its grids are recorded
(`gsdocc record`'s files) and its /diagnostics read. Finally each grid is drawn beside its six camera images
(`gsdocc render`'s figure), and a summary is printed and written to OUT/summary.json: camera sets played and
received, grids out, latency, where the files are.

Rate: the node infers on sets 0.5 s apart (keyframe cadence). On CUDA the bag plays in real time; on CPU, where
one inference takes about 9 s on two cores, it plays slowly enough that every keyframe is inferred (--rate
overrides). Latency is measured here, on the wall clock: from the arrival of the last image of a camera set to
the arrival of its grid (the bag keeps its recorded stamps, so the node's own /diagnostics latency compares
them with the wall clock and is not used).

OUT (default out/demo) is the demo's own folder: a previous demo's results there are replaced; a folder that
holds anything else is refused. All processes are stopped on exit, also after an error or Ctrl-C; the exit code
is non-zero when no grid came out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import gsdocc_ros
from gsdocc_ros.deploy.backends import BACKENDS
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA
from gsdocc_ros.pipeline.grid import FREE_INDEX
from gsdocc_ros.ros.diagnostics import DiagnosticRules
from gsdocc_ros.tools.cli import ToolError
from gsdocc_ros.tools.grid_files import read_grid_file
from gsdocc_ros.tools.nuscenes_to_bag import TF_STATIC_TOPIC, TF_TOPIC, camera_info_topic, image_topic

VERB = "demo"
GRID_TOPIC = "/gsdocc/occupancy"
DIAGNOSTICS_TOPIC = "/diagnostics"
NODE_NAME = "/gsdocc"
HISTORY_STEP_S = 0.5
"""Bag seconds between two inferred camera sets (the node's keyframe cadence)."""
CPU_SECONDS_PER_SET = 20.0
"""Wall seconds allowed per inferred set on CPU: ~9 s per forward on two idle cores, doubled for a busy machine."""
SYNC_SLOP_NS = 60_000_000
"""Images within this of a key-camera stamp belong to its set (the node's default sync_slop_s)."""
READY_TIMEOUT_S = 600.0
"""How long the node may take to start (import torch, build and merge the network) before the demo gives up."""
STOP_TIMEOUT_S = 10.0
"""How long the node may take to stop after SIGINT (it finishes the inference in progress) before SIGKILL."""
OUT_ENTRIES = ("synthetic_bag", "truth", "grids", "pictures", "summary.json", "node.log")
"""Everything the demo writes in OUT; a previous run's entries are replaced."""
RANDOM_WEIGHTS_BANNER = "\n".join(["*" * 92] + [f"*** {line:<84} ***" for line in (
    "NO CHECKPOINT: the node runs on seeded RANDOM WEIGHTS. The whole pipeline is real,",
    "but the occupancy it outputs is meaningless. For real output give a checkpoint:",
    "  make demo CHECKPOINT=/path/gsdocc.pth      (or: gsdocc demo --checkpoint PATH)")] + ["*" * 92])


def default_rate(device: str) -> float:
    """Replay speed at which the node on ``device`` infers every keyframe: real time on CUDA, slower on CPU."""
    return 1.0 if device == "cuda" else HISTORY_STEP_S / CPU_SECONDS_PER_SET


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; cpu and cuda unchanged."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare_out(out: Path) -> None:
    """Make OUT ready: created if absent, a previous demo's entries removed; ToolError if it holds anything else."""
    if out.exists() and not out.is_dir():
        raise ToolError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUT_ENTRIES)
        if foreign:
            raise ToolError(f"--out {out} holds files the demo did not write ({', '.join(foreign[:5])}); choose "
                            "another folder or remove them")
        for name in OUT_ENTRIES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def node_command(checkpoint: Path | None, device: str, backend: str = "torch", graph_dir: Path | None = None
                 ) -> list[str]:
    """The command line of the node process: `gsdocc node` with the demo's parameters."""
    params = [f"device:={device}"]
    params.append(f"checkpoint:={checkpoint.resolve()}" if checkpoint else "allow_random_weights:=true")
    if backend != "torch":
        params += [f"backend:={backend}", f"graph_dir:={graph_dir.resolve() if graph_dir else ''}"]
    return [sys.executable, "-m", "gsdocc_ros.tools.cli", "node", "--ros-args",
            *[arg for param in params for arg in ("-p", param)]]


class NodeProcess:
    """The occupancy node as a child process, its output going to a log file; stop() always ends it."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        package_root = str(Path(gsdocc_ros.__file__).resolve().parents[1])  # the child imports this same package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        with open(log, "wb") as stream:
            self.process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 8) -> str:
        """The last lines of its log, for error messages."""
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:]) or "(empty log)"

    def stop(self) -> str:
        """SIGINT, then SIGKILL after STOP_TIMEOUT_S; returns how it ended."""
        if not self.alive():
            return f"exited with code {self.process.returncode}"
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
            return f"stopped (code {self.process.returncode})"
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return f"killed after not stopping within {STOP_TIMEOUT_S:.0f} s"


@dataclass
class ReceivedGrid:
    """One grid from the node, with the wall time it arrived."""

    msg: Any
    """gsdocc_ros/msg/SemanticVoxelGrid."""
    stamp_ns: int
    arrived: float
    """time.monotonic() at arrival."""
    camera_set: dict[str, tuple[Any, float]]
    """camera -> (CompressedImage, its arrival time) of the set the grid was inferred from, as received here."""


@dataclass
class DiagnosticsReport:
    """The node's latest /diagnostics values."""

    values: dict[str, str]
    arrived: float

    def counter(self, name: str) -> int:
        return int(self.values.get(name, 0))

    def stages_ms(self) -> dict[str, float]:
        """Per-stage wall times (ms) of the node's last inferred set."""
        return {k[len("stage_"):-len("_ms")]: float(v) for k, v in self.values.items()
                if k.startswith("stage_") and k.endswith("_ms")}

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.values.items() if v.isdigit()}

    def idle(self) -> bool:
        """True when every camera set the node received has an outcome (grid, skip, drop, rejection, error)."""
        rules = DiagnosticRules()
        outcomes = [rules.output_counter, "sets_skipped_cadence", "sets_dropped_busy", *rules.reject_counters,
                    *rules.error_counters]
        return self.counter("sets_in") == sum(self.counter(name) for name in outcomes)


class Monitor:
    """The demo's ROS side: a node that plays the bag and listens to the images, the grids and /diagnostics.

    Callbacks only record (with arrival times); an executor spins it in a background thread.
    """

    def __init__(self, image_topics: dict[str, str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import CompressedImage

        from gsdocc_ros.msg import SemanticVoxelGrid

        self.context = rclpy.Context()
        # No rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt here, so the demo stops its node and player.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("gsdocc_demo", context=self.context)
        self.lock = threading.Lock()
        self.grids: list[ReceivedGrid] = []
        self.images: dict[str, dict[int, tuple[Any, float]]] = defaultdict(dict)
        """camera -> stamp -> (CompressedImage, arrival time); images older than 10 s of bag time are dropped."""
        self.diagnostics: DiagnosticsReport | None = None
        self.stage_history: list[dict[str, float]] = []
        """The node's stage times (ms) of each grid it reported (a report per new grids_out count)."""
        self.node.create_subscription(SemanticVoxelGrid, GRID_TOPIC, self._on_grid,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 10)
        for camera, topic in image_topics.items():
            self.node.create_subscription(CompressedImage, topic, lambda msg, cam=camera: self._on_image(cam, msg),
                                          qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="gsdocc-demo-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _on_grid(self, msg: Any) -> None:
        arrived = time.monotonic()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.lock:
            self.grids.append(ReceivedGrid(msg, stamp, arrived, self._camera_set(stamp)))

    def _on_image(self, camera: str, msg: Any) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.lock:
            images = self.images[camera]
            images[stamp] = (msg, time.monotonic())
            for old in [s for s in images if s < stamp - 10 * 10**9]:
                del images[old]

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name == NODE_NAME:
                report = DiagnosticsReport({kv.key: kv.value for kv in status.values}, time.monotonic())
                with self.lock:
                    if self.diagnostics is None or report.counter("grids_out") > self.diagnostics.counter("grids_out"):
                        self.stage_history.append(report.stages_ms())
                    self.diagnostics = report

    def grid_publishers(self) -> int:
        """Publishers of the grid topic seen in the graph (the node's, once it is up)."""
        return self.node.count_publishers(GRID_TOPIC)

    def _camera_set(self, key_stamp_ns: int) -> dict[str, tuple[Any, float]]:
        """The received image (and arrival time) of each camera nearest ``key_stamp_ns`` within the sync slop."""
        found = {}
        for camera, images in self.images.items():
            near = [s for s in images if abs(s - key_stamp_ns) <= SYNC_SLOP_NS]
            if near:
                found[camera] = images[min(near, key=lambda s: abs(s - key_stamp_ns))]
        return found

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(5.0)


@dataclass
class DemoResult:
    """Everything the summary reports."""

    grids: list[dict] = field(default_factory=list)
    sets_in_bag: int = 0
    sets_played: int = 0
    node_report: DiagnosticsReport | None = None
    """The node's last /diagnostics report."""
    stage_history: list[dict[str, float]] = field(default_factory=list)


def wait_until_ready(node: NodeProcess, monitor: Monitor, player: Any, needed: dict[str, int]) -> None:
    """Block until the node subscribes to every input topic and publishes its grid topic; ToolError if it dies."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        counts = player.subscription_counts()
        if all(counts.get(topic, 0) >= n for topic, n in needed.items()) and monitor.grid_publishers() > 0:
            return
        if not node.alive():
            raise ToolError(f"the node exited during start-up (code {node.process.returncode}); {node.log} ends "
                            f"with:\n{node.tail()}")
        if time.monotonic() > deadline:
            missing = [topic for topic, n in needed.items() if counts.get(topic, 0) < n]
            raise ToolError(f"the node did not subscribe to {', '.join(missing) or GRID_TOPIC} within "
                            f"{READY_TIMEOUT_S:.0f} s; {node.log} ends with:\n{node.tail()}")
        time.sleep(0.2)


def replay(node: NodeProcess, monitor: Monitor, bag: Path, rate: float, wait_s: float) -> DemoResult:
    """Play ``bag`` into the ready node and collect its grids until every played set is answered (or ``wait_s``)."""
    from gsdocc_ros.tools.play import BagPlayer, BagSource, PlayOptions

    source = BagSource(bag)
    player = None
    try:
        key_topic = image_topic(KEY_CAMERA)
        if key_topic not in source.counts:
            raise ToolError(f"bag {bag} has no {key_topic}; the node needs the six /CAM_*/image_rect_compressed "
                            "topics (see gsdocc nuscenes-to-bag)")
        player = BagPlayer(monitor.node, source, PlayOptions(rate=rate))
        inputs = [image_topic(c) for c in CAMERA_NAMES] + [camera_info_topic(c) for c in CAMERA_NAMES]
        needed = {t: 2 if t.endswith("_compressed") else 1  # the images are also heard by the monitor
                  for t in (*inputs, TF_TOPIC, TF_STATIC_TOPIC) if t in source.counts}
        print(f"waiting for the node to load the model and subscribe (log: {node.log}) ...", file=sys.stderr)
        wait_until_ready(node, monitor, player, needed)
        result = DemoResult(sets_in_bag=source.counts[key_topic])
        duration = source.duration_ns / 1e9 / rate
        print(f"playing {bag} at rate {rate:.3g} ({duration:.0f} s) ...", file=sys.stderr)
        player.start()
        with tqdm(total=result.sets_in_bag, desc="grids", unit="grid") as progress:
            ended_at = None
            while True:
                if player.join(timeout=0.0) and ended_at is None:
                    ended_at = time.monotonic()
                with monitor.lock:
                    received, report = len(monitor.grids), monitor.diagnostics
                if received > progress.n:
                    progress.update(received - progress.n)
                played = player.stats.published[key_topic]
                if ended_at is not None:
                    if received >= played:
                        break
                    if report is not None and report.arrived > ended_at + 1.0 and report.idle():
                        break  # the node answered every set it got: the others were skipped or dropped
                    if time.monotonic() > ended_at + wait_s:
                        print(f"gave up waiting after {wait_s:.0f} s for {played - received} more grids",
                              file=sys.stderr)
                        break
                if not node.alive():
                    raise ToolError(f"the node exited during the replay (code {node.process.returncode}); "
                                    f"{node.log} ends with:\n{node.tail()}")
                time.sleep(0.1)
        result.sets_played = player.stats.published[key_topic]
        time.sleep(1.5)  # one more diagnostics period, so the report counts the last grid
        with monitor.lock:
            result.node_report, result.stage_history = monitor.diagnostics, list(monitor.stage_history)
        return result
    finally:
        if player is not None:
            player.stop()
            try:
                player.join(5.0)
            except ToolError:
                pass  # the replay's own error matters less than the one being raised
        source.close()


def save_outputs(monitor: Monitor, out: Path, bag: Path, truth_dir: Path | None) -> list[dict]:
    """Write every received grid as <token>.npz and its picture (cameras + top-down + 3D) as <token>.png."""
    from gsdocc_ros.ros.image_decode import decode_image
    from gsdocc_ros.tools.record import TokenMap, save_message
    from gsdocc_ros.tools.render import render_grid, save_png

    try:
        tokens = TokenMap.from_bag(bag)
    except ToolError:
        tokens = None  # a bag without /gsdocc/sample_token: files are named by stamp
    (out / "grids").mkdir()
    (out / "pictures").mkdir()
    rows = []
    for grid in tqdm(monitor.grids, desc="drawing", unit="grid"):
        try:
            path = save_message(grid.msg, out / "grids", tokens)
        except ValueError as error:
            print(f"warning: grid at {grid.stamp_ns} refused: {error}", file=sys.stderr)
            continue
        labels = read_grid_file(path).labels
        images = {camera: decode_image(msg) for camera, (msg, _) in grid.camera_set.items()}
        complete = max((t for _, t in grid.camera_set.values()), default=math.nan)
        row = {"stamp_ns": grid.stamp_ns, "file": str(path.relative_to(out)),
               "latency_ms": round((grid.arrived - complete) * 1e3, 1) if grid.camera_set else None,
               "occupied_voxels": int(np.count_nonzero(labels != FREE_INDEX)), "source": grid.msg.source}
        picture = out / "pictures" / f"{path.stem}.png"
        save_png(render_grid(labels, images=images, title=f"{grid.msg.source}: {path.stem}"), picture)
        row["picture"] = str(picture.relative_to(out))
        truth = truth_dir / path.name if truth_dir is not None else None
        if truth is not None and truth.is_file():
            truth_picture = out / "pictures" / f"{path.stem}_truth.png"
            save_png(render_grid(read_grid_file(truth).labels, title=f"ground truth of the synthetic scene: "
                                                                     f"{path.stem}"), truth_picture)
            row.update(truth=str(truth.relative_to(out)), truth_picture=str(truth_picture.relative_to(out)))
        rows.append(row)
    return rows


def stats(values: list[float]) -> dict[str, float | None]:
    """mean, min and max of ``values`` (None when empty), rounded to 0.1."""
    if not values:
        return {"mean": None, "min": None, "max": None}
    return {"mean": round(float(np.mean(values)), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def summarise(result: DemoResult, args: argparse.Namespace, bag: Path, device: str, rate: float,
              wall_s: float, node_end: str) -> dict:
    """The summary.json content."""
    latencies = [g["latency_ms"] for g in result.grids if g["latency_ms"] is not None]
    report = result.node_report
    processing = [sum(v for k, v in stages.items() if k != "set_wait") for stages in result.stage_history if stages]
    return {
        "bag": str(bag), "synthetic": args.bag is None,
        "weights": str(args.checkpoint) if args.checkpoint else "RANDOM (seeded): the occupancy is meaningless",
        "device": device, "rate": rate,
        "camera_sets_in_bag": result.sets_in_bag, "camera_sets_played": result.sets_played,
        "camera_sets_received_by_node": report.counter("sets_in") if report else None,
        "grids_out": len(result.grids),
        "latency_ms": {"what": "wall clock, last image of a camera set arriving -> its grid arriving",
                       **stats(latencies)},
        "node_processing_ms": {"what": "the node's stage times per grid, without waiting for its worker",
                               **stats(processing)},
        "node_stages_ms_last_grid": report.stages_ms() if report else {},
        "node_counters": report.counters() if report else {},
        "grids": result.grids, "node_log": "node.log", "node_end": node_end, "wall_s": round(wall_s, 1),
    }


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc demo``."""
    parser = subparsers.add_parser(VERB, help="run the whole pipeline on a generated (or given) bag and show it",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="GSD-OCC checkpoint (default: random weights, announced)")
    parser.add_argument("--bag", type=Path, help="bag to replay (default: a generated synthetic street)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="demo folder (default: %(default)s)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the node runs the network (default: cuda when available)")
    parser.add_argument("--rate", type=float, help="replay speed factor (default: 1 on CUDA, "
                                                   f"{default_rate('cpu'):.3g} on CPU)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="runtime of the node's network (default torch; others need --graph-dir)")
    parser.add_argument("--graph-dir", type=Path, help="`gsdocc export` folder for --backend other than torch")
    parser.add_argument("--keyframes", type=int, default=4,
                        help="camera sets (0.5 s apart) of the synthetic bag (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when grids came out, ToolError (exit 2) naming what is wrong otherwise."""
    started = time.monotonic()
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise ToolError(f"--checkpoint {args.checkpoint}: no such file")
    if args.bag is not None and not args.bag.exists():
        raise ToolError(f"--bag {args.bag} does not exist")
    if args.rate is not None and not args.rate > 0:
        raise ToolError(f"--rate must be positive, got {args.rate}")
    if args.backend != "torch" and (args.graph_dir is None or not args.graph_dir.is_dir()):
        raise ToolError(f"--backend {args.backend} needs --graph-dir, an existing `gsdocc export` folder")
    if args.keyframes < 1:
        raise ToolError(f"--keyframes must be at least 1, got {args.keyframes}")
    if args.bag is not None and args.out.resolve() in args.bag.resolve().parents:
        raise ToolError(f"--bag {args.bag} lies inside --out {args.out}, whose previous results the demo replaces; "
                        "copy the bag elsewhere first")
    device = resolve_device(args.device)
    rate = args.rate or default_rate(device)
    prepare_out(args.out)
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)

    truth_dir = None
    if args.bag is None:
        from gsdocc_ros.tools.synthetic_scene import write_synthetic_bag

        truth_dir = args.out / "truth"
        bag = write_synthetic_bag(args.out / "synthetic_bag", args.keyframes, truth_dir=truth_dir).path
        print(f"generated {bag}: {args.keyframes} camera sets of a synthetic street", file=sys.stderr)
    else:
        bag = args.bag

    node = NodeProcess(node_command(args.checkpoint, device, args.backend, args.graph_dir), args.out / "node.log")
    monitor = None
    node_end = "not stopped"
    try:
        monitor = Monitor({camera: image_topic(camera) for camera in CAMERA_NAMES})
        wait_s = 3 * CPU_SECONDS_PER_SET if device == "cpu" else 10.0
        result = replay(node, monitor, bag, rate, wait_s)
    finally:
        node_end = node.stop()
        if monitor is not None:
            monitor.close()
    result.grids = save_outputs(monitor, args.out, bag, truth_dir)
    summary = summarise(result, args, bag, device, rate, time.monotonic() - started, node_end)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, args.out)
    if not result.grids:
        raise ToolError(f"no grid came out of the node; see {args.out / 'node.log'}:\n{node.tail()}")
    return 0


def print_summary(summary: dict, out: Path) -> None:
    """The short report on stdout; the last line says what was written where."""
    latency = summary["latency_ms"]
    print(f"weights: {summary['weights']}  device: {summary['device']}  replay rate: {summary['rate']:.3g}")
    print(f"camera sets: {summary['camera_sets_played']} played of {summary['camera_sets_in_bag']} in the bag, "
          f"{summary['camera_sets_received_by_node'] if summary['camera_sets_received_by_node'] is not None else '?'} "
          f"received by the node; grids out: {summary['grids_out']}")
    if latency["mean"] is not None:
        print(f"latency (last image of a set -> grid, wall clock): mean {latency['mean'] / 1e3:.2f} s, "
              f"min {latency['min'] / 1e3:.2f} s, max {latency['max'] / 1e3:.2f} s")
    processing = summary["node_processing_ms"]
    if processing["mean"] is not None:
        print(f"node processing per grid (its stage times, without queueing): mean {processing['mean'] / 1e3:.2f} s, "
              f"min {processing['min'] / 1e3:.2f} s, max {processing['max'] / 1e3:.2f} s")
    stages = summary["node_stages_ms_last_grid"]
    if stages:
        print("node stages of the last grid (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    pictures = sum(1 for g in summary["grids"] for key in ("picture", "truth_picture") if key in g)
    print(f"wrote {out / 'summary.json'}, {summary['grids_out']} grids in {out / 'grids'}, {pictures} pictures in "
          f"{out / 'pictures'} (node log: {out / 'node.log'}; took {summary['wall_s']:.0f} s)")
