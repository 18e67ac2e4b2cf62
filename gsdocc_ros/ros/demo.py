"""The demo behind `gsdocc demo` and `make demo`: a bag (generated or given) replayed into the occupancy node run as
its own process, its grids and /diagnostics collected, each grid drawn on one picture with its camera images and
(for the synthetic street) its ground truth, a summary with the node's stages in words and the machine's load.

``run_demo`` does it all; Monitor is the demo's ROS side (the player's node, listening to the images, the grids and
/diagnostics). Latency is measured on the wall clock, from the arrival of the last image of a camera set to the
arrival of its grid (the bag keeps its recorded stamps, so the node's own /diagnostics latency compares them with
the wall clock and is not used).

Why this file is long: it is the demo's whole run (the ROS side, the replay loop, the files and the summary), each a
short piece that only this run uses.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import TF_STATIC_TOPIC, TF_TOPIC, camera_info_topic, image_topic
from gsdocc_ros.io.grid_files import read_grid_file
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA
from gsdocc_ros.pipeline.grid import FREE_INDEX
from gsdocc_ros.ros.counters import NodeCounter
from gsdocc_ros.ros.node_process import DIAGNOSTICS_TOPIC, GRID_TOPIC, NODE_NAME, DiagnosticsReport, NodeProcess
from gsdocc_ros.ros.stages import STAGE_DESCRIPTIONS, NodeStage

HISTORY_STEP_S = 0.5
"""Bag seconds between two inferred camera sets (the node's keyframe cadence)."""
CPU_SECONDS_PER_SET = 20.0
"""Wall seconds allowed per inferred set on CPU. Measured (`gsdocc demo`, 4 sets, 2 cores, 1-minute load): 8.7 s
per grid at load 0.4, 12-13.5 s at 1.2-2.8, 26.5 s at 3.8 (other jobs); beyond 20 s sets queue (set_wait)."""
SYNC_SLOP_NS = 60_000_000
"""Images within this of a key-camera stamp belong to its set (the node's default sync_slop_s)."""
READY_TIMEOUT_S = 600.0
"""How long the node may take to start (import torch, build and merge the network) before the demo gives up."""
OUT_ENTRIES = ("synthetic_bag", "truth", "grids", "pictures", "summary.json", "node.log")
"""Everything the demo writes in OUT; a previous run's entries are replaced."""


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
                    grids, previous = report.counter(NodeCounter.GRIDS_OUT), self.diagnostics
                    if previous is None or grids > previous.counter(NodeCounter.GRIDS_OUT):
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
    from gsdocc_ros.ros.bag_player import BagPlayer, BagSource, PlayOptions

    source = BagSource(bag)
    player = None
    try:
        key_topic = image_topic(KEY_CAMERA)  # present: gsdocc demo checked a given bag, a generated one has it
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


def save_outputs(monitor: Monitor, out: Path, bag: Path, truth_dir: Path | None, checkpoint: Path | None) -> list[dict]:
    """Write every received grid as <token>.npz and its one picture as <token>.png: the cameras, the prediction
    (top-down + 3D), the ground truth beside it when ``truth_dir`` has one, and a line saying how to read it."""
    from gsdocc_ros.io.sample_tokens import TokenMap
    from gsdocc_ros.ros.grid_recorder import save_message
    from gsdocc_ros.ros.image_decode import decode_image
    from gsdocc_ros.viz.render import reading_line, render_grid, save_png

    try:
        tokens = TokenMap.from_bag(bag)
    except ToolError:
        tokens = None  # a bag without /gsdocc/sample_token: files are named by stamp
    (out / "grids").mkdir()
    (out / "pictures").mkdir()
    name = f"prediction ({'random weights' if checkpoint is None else checkpoint.name})"
    rows = []
    for grid in tqdm(monitor.grids, desc="drawing", unit="grid"):
        try:
            path = save_message(grid.msg, out / "grids", tokens)
        except ValueError as error:
            print(f"warning: grid at {grid.stamp_ns} refused: {error}", file=sys.stderr)
            continue
        grid_file = read_grid_file(path)
        labels = grid_file.labels
        images = {camera: decode_image(msg) for camera, (msg, _) in grid.camera_set.items()}
        complete = max((t for _, t in grid.camera_set.values()), default=math.nan)
        row = {"stamp_ns": grid.stamp_ns, "file": str(path.relative_to(out)),
               "latency_ms": round((grid.arrived - complete) * 1e3, 1) if grid.camera_set else None,
               "occupied_voxels": int(np.count_nonzero(labels != FREE_INDEX)), "source": grid.msg.source}
        truth = truth_dir / path.name if truth_dir is not None else None
        truth_labels = read_grid_file(truth).labels if truth is not None and truth.is_file() else None
        if truth_labels is not None:
            row["truth"] = str(truth.relative_to(out))
        picture = out / "pictures" / f"{path.stem}.png"
        title = grid_file.info.caption(path.name, grid_file.kind)
        reading = reading_line(checkpoint is None, truth_labels is not None)
        save_png(render_grid(labels, images=images, title=title, name=name, truth=truth_labels,
                             truth_name="ground truth of the synthetic scene", reading=reading), picture)
        row["picture"] = str(picture.relative_to(out))
        rows.append(row)
    return rows


def stats(values: list[float]) -> dict[str, float | None]:
    """mean, min and max of ``values`` (None when empty), rounded to 0.1."""
    if not values:
        return {"mean": None, "min": None, "max": None}
    return {"mean": round(float(np.mean(values)), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def machine_load() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages now (above the core count, the node's times grow)."""
    return [round(load, 2) for load in os.getloadavg()]


def summarise(result: DemoResult, checkpoint: Path | None, synthetic: bool, bag: Path, device: str, rate: float,
              wall_s: float, node_end: str, loads: tuple[list[float], list[float]]) -> dict:
    """The summary.json content: counts, times with the stages in words, and the load they were measured under."""
    latencies = [g["latency_ms"] for g in result.grids if g["latency_ms"] is not None]
    report = result.node_report
    processing = [sum(v for k, v in s.items() if k != NodeStage.SET_WAIT) for s in result.stage_history if s]
    return {
        "bag": str(bag), "synthetic": synthetic,
        "weights": str(checkpoint) if checkpoint else "RANDOM (seeded): the occupancy is meaningless",
        "device": device, "rate": rate,
        "camera_sets_in_bag": result.sets_in_bag, "camera_sets_played": result.sets_played,
        "camera_sets_received_by_node": report.counter(NodeCounter.SETS_IN) if report else None,
        "grids_out": len(result.grids),
        "latency_ms": {"what": "wall clock, last image of a camera set arriving -> its grid arriving: the node's "
                               "processing plus any queueing behind earlier sets (set_wait)", **stats(latencies)},
        "node_processing_ms": {"what": "the node's stage times per grid, without queueing (set_wait)",
                               **stats(processing)},
        "node_stages_ms_last_grid": report.stages_ms() if report else {},
        "node_stage_descriptions": {str(stage): what for stage, what in STAGE_DESCRIPTIONS.items()},
        "machine": {"cpu_count": os.cpu_count(), "load_at_start": loads[0], "load_at_end": loads[1],
                    "what": "1-, 5- and 15-minute load averages of the whole machine as the replay started and ended"},
        "node_counters": report.counters() if report else {},
        "grids": result.grids, "node_log": "node.log", "node_end": node_end, "wall_s": round(wall_s, 1),
    }


def run_demo(out: Path, checkpoint: Path | None, bag: Path | None, device: str, rate: float | None,
             keyframes: int, backend: str = "torch", graph_dir: Path | None = None) -> dict:
    """The whole demo into ``out`` (already prepared); returns the summary, also written to OUT/summary.json.

    ``bag`` None generates the synthetic street (``keyframes`` camera sets) with its ground truth; ``rate`` None
    plays at default_rate(device). ToolError when no grid came out.
    """
    started = time.monotonic()
    rate = rate or default_rate(device)
    truth_dir = None
    if bag is None:
        from gsdocc_ros.io.synthetic_scene import write_synthetic_bag

        truth_dir = out / "truth"
        played = write_synthetic_bag(out / "synthetic_bag", keyframes, truth_dir=truth_dir).path
        print(f"generated {played}: {keyframes} camera sets of a synthetic street", file=sys.stderr)
    else:
        played = bag
    load_at_start = machine_load()

    node = NodeProcess(node_command(checkpoint, device, backend, graph_dir), out / "node.log")
    monitor = None
    node_end = "not stopped"
    try:
        monitor = Monitor({camera: image_topic(camera) for camera in CAMERA_NAMES})
        wait_s = 3 * CPU_SECONDS_PER_SET if device == "cpu" else 10.0
        result = replay(node, monitor, played, rate, wait_s)
        loads = (load_at_start, machine_load())
    finally:
        node_end = node.stop()
        if monitor is not None:
            monitor.close()
    result.grids = save_outputs(monitor, out, played, truth_dir, checkpoint)
    summary = summarise(result, checkpoint, bag is None, played, device, rate, time.monotonic() - started, node_end,
                        loads)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not result.grids:
        raise ToolError(f"no grid came out of the node; see {out / 'node.log'}:\n{node.tail()}")
    return summary
