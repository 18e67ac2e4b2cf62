"""Soak: the running node fed a 12 Hz six-camera stream for N camera sets; memory, drops and latency over time.

  python benchmarks/soak.py [--sets 1000] [--rate 12] [--input-size 64x192] [--device cpu] [--json OUT]

The node runs as its own process (`gsdocc node`, seeded random weights), so the resident memory sampled from
/proc/<pid>/status is the node's alone. This process publishes the real nuScenes sample (the six JPEGs, their
CameraInfo, tf with the real poses; test/ros/ros_feeder.SampleFeeder) at --rate sets per second, stamped with the
wall clock, each image when its camera fires (the sample's stagger, about 42 ms per set), and listens to the
grids and /diagnostics. After the stream it waits until the node has an outcome for every set it received, then
reports:

* memory: RSS right after the first grid (warm-up done) and after the last one (the same point of the inference
  cycle, so the two are comparable), the growth between them, and the peak; CUDA memory from nvidia-smi when
  the node runs on a GPU;
* sets published, received as sets, grids out, and every set dropped with its reason (node counters: busy,
  cadence, rejections, errors, out of memory; synchroniser: sets it could not complete, messages lost before
  it). ``accounted``: published = grids + each drop reason + in flight, and the node received every set the
  synchroniser formed. (The synchroniser's count of sets it could not complete is exact when each lost period
  misses whole images of some cameras; when different cameras lose different periods it is a lower bound, and
  ``unexplained`` shows the rest.)
* latency from the key camera stamp to the grid's arrival here, over time: the first and last third compared.

The numbers go to --json (default out/soak/soak.json) and a summary is printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "ros"))  # the test suite's SampleFeeder publishes the sample, as in the tests

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402

from gsdocc_ros.msg import SemanticVoxelGrid  # noqa: E402
from gsdocc_ros.pipeline.frames import CAMERA_NAMES  # noqa: E402
from gsdocc_ros.ros.conversions import stamp_to_ns  # noqa: E402
from gsdocc_ros.ros.counters import SET_OUTCOMES, NodeCounter, sets_in_flight  # noqa: E402
from gsdocc_ros.ros.node_process import (DIAGNOSTICS_TOPIC, GRID_TOPIC, NODE_NAME,  # noqa: E402
                                         DiagnosticsReport, NodeProcess)
from gsdocc_ros.io.output import atomic_output  # noqa: E402
from gsdocc_ros.io.sample_location import sample_data_folder  # noqa: E402
from ros_feeder import SampleFeeder, spin_until  # noqa: E402

DEFAULT_SCENE = sample_data_folder() / "nuscenes_sample" / "scene-0061_ca9a282c"
READY_TIMEOUT_S = 600.0
"""How long the node may take to start (import torch, build and merge the network)."""


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cuda_mb(pid: int) -> float | None:
    """GPU memory of process ``pid`` in MiB as nvidia-smi reports it; None without nvidia-smi or GPU use."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=30)
    for line in query.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid):
            return float(fields[1])
    return None


@dataclass
class Listener:
    """The grids (key stamp, arrival on the wall clock, node RSS then) and the node's latest /diagnostics."""

    pid: int
    grids: list[dict[str, float]] = field(default_factory=list)
    report: DiagnosticsReport | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_grid(self, msg: SemanticVoxelGrid) -> None:
        arrived_ns = time.time_ns()
        stamp_ns = stamp_to_ns(msg.header.stamp)
        with self.lock:
            self.grids.append({"stamp_ns": stamp_ns, "latency_ms": (arrived_ns - stamp_ns) / 1e6,
                               "t_s": time.monotonic(), "rss_mb": rss_mb(self.pid), "cuda_mb": cuda_mb(self.pid)})

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == NODE_NAME:
                with self.lock:
                    self.report = DiagnosticsReport({kv.key: kv.value for kv in status.values}, time.monotonic())

    def counters(self) -> dict[str, int]:
        with self.lock:
            return self.report.counters() if self.report else {}


def node_command(args: argparse.Namespace) -> list[str]:
    """`gsdocc node` on random weights with the soak's device and input size."""
    height, width = args.input_size
    params = {"device": args.device, "allow_random_weights": "true", "input_height": height, "input_width": width,
              "diagnostics_period_s": 0.5}
    return [sys.executable, "-m", "gsdocc_ros.tools.cli", "node", "--ros-args",
            *[arg for name, value in params.items() for arg in ("-p", f"{name}:={value}")]]


class Sampler:
    """Samples the node's RSS and the latest /diagnostics counters every ``period_s`` in a background thread."""

    def __init__(self, node: NodeProcess, listener: Listener, period_s: float) -> None:
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(node, listener, period_s), daemon=True)
        self._t0 = time.monotonic()
        self._thread.start()

    def _run(self, node: NodeProcess, listener: Listener, period_s: float) -> None:
        while node.alive() and not self._stop.wait(period_s):
            self.samples.append({"t_s": time.monotonic() - self._t0, "rss_mb": rss_mb(node.process.pid),
                                 "counters": listener.counters()})

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def stream(feed: SampleFeeder, sets: int, rate_hz: float, node: NodeProcess) -> float:
    """Publish ``sets`` camera sets at ``rate_hz``, stamped with the wall clock, each image at its own stamp as the
    cameras fire one after another (tf and CameraInfo first); returns the duration in seconds."""
    stamps = feed.camera_stamps()
    first = min(stamps.values())
    order = sorted(CAMERA_NAMES, key=stamps.get)
    wall0_ns, t0 = time.time_ns(), time.monotonic()
    for index in range(sets):
        if not node.alive():
            raise RuntimeError(f"the node died after {index} sets:\n{node.tail()}")
        offset_ns = wall0_ns + round(index * 1e9 / rate_hz) - first
        time.sleep(max(0.0, t0 + index / rate_hz - time.monotonic()))
        feed.publish_set(offset_ns, cameras=())  # tf and CameraInfo of the set
        for name in order:
            stamp = stamps[name] + offset_ns
            time.sleep(max(0.0, t0 + (stamp - wall0_ns) / 1e9 - time.monotonic()))
            feed.image_pubs[name].publish(feed.image(name, stamp))
    return time.monotonic() - t0


def settle(listener: Listener, timeout_s: float) -> dict[str, int]:
    """Wait until the node has an outcome for every set it received and its counters stop changing."""
    deadline, last, stable_since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        counters = listener.counters()
        if counters != last:
            last, stable_since = counters, time.monotonic()
        done = (bool(counters) and sets_in_flight(counters) == 0
                and len(listener.grids) == counters.get(NodeCounter.GRIDS_OUT, 0))
        if done and time.monotonic() - stable_since > 2.0:
            break
        time.sleep(0.2)
    return listener.counters()


def account(published: int, cameras: int, counters: dict[str, int]) -> dict[str, Any]:
    """Every published set: a grid, one node drop reason, still in flight, or never completed as a set."""
    drops = {str(name): counters.get(name, 0) for name in SET_OUTCOMES if name != NodeCounter.GRIDS_OUT}
    sets_in, sets_out = counters.get(NodeCounter.SETS_IN, 0), counters.get(NodeCounter.SYNC_SETS_OUT, 0)
    # messages still queued in the synchroniser: incomplete sets of the last periods that nothing will complete
    received = counters.get(NodeCounter.SYNC_MESSAGES_IN, 0)
    dropped = counters.get(NodeCounter.SYNC_MESSAGES_DROPPED, 0)
    pending = received - cameras * sets_out - dropped
    result = {
        "sets_published": published,
        "messages_published": published * cameras,
        "messages_received": received,
        "messages_lost_in_transport": published * cameras - received,
        "sync_sets_out": sets_out,
        "sync_incomplete_sets": counters.get(NodeCounter.SYNC_INCOMPLETE_SETS, 0),
        "sync_messages_dropped": dropped,
        "sync_pending_sets": -(-pending // cameras),
        "sets_in": sets_in,
        "grids_out": counters.get(NodeCounter.GRIDS_OUT, 0),
        "dropped": {name: n for name, n in drops.items() if n},
        "in_flight": sets_in_flight(counters),
        "cache_resets": counters.get(NodeCounter.CACHE_RESETS, 0),
    }
    explained = (result["grids_out"] + sum(drops.values()) + result["in_flight"] + result["sync_incomplete_sets"]
                 + result["sync_pending_sets"])
    result["unexplained"] = published - explained
    result["accounted"] = sets_in == sets_out and result["unexplained"] == 0
    return result


def thirds(values: list[float]) -> dict[str, float | None]:
    """Median of the first and of the last third of ``values`` (in time order)."""
    third = len(values) // 3
    if third == 0:
        return {"first_third_median": None, "last_third_median": None}
    return {"first_third_median": statistics.median(values[:third]),
            "last_third_median": statistics.median(values[-third:])}


def summarise(args: argparse.Namespace, duration_s: float, samples: list[dict], grids: list[dict],
              counters: dict[str, int]) -> dict[str, Any]:
    """The JSON report (see the module doc)."""
    latencies = [g["latency_ms"] for g in grids]
    memory: dict[str, Any] = {"rss_peak_mb": max([s["rss_mb"] for s in samples] + [g["rss_mb"] for g in grids])}
    if grids:
        start, end = grids[0]["rss_mb"], grids[-1]["rss_mb"]
        memory.update(rss_after_first_grid_mb=start, rss_after_last_grid_mb=end,
                      rss_growth_percent=100.0 * (end - start) / start,
                      cuda_after_first_grid_mb=grids[0]["cuda_mb"], cuda_after_last_grid_mb=grids[-1]["cuda_mb"])
    stamps = [g["stamp_ns"] for g in grids]
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "settings": {"sets": args.sets, "rate_hz": args.rate, "device": args.device,
                     "input_size": "x".join(map(str, args.input_size)), "scene": str(args.scene)},
        "stream_s": duration_s,
        "memory": memory,
        "accounting": account(args.sets, len(CAMERA_NAMES), counters),
        "latency_ms": {"count": len(latencies), "median": statistics.median(latencies) if latencies else None,
                       "max": max(latencies, default=None), **thirds(latencies)},
        "grids_in_stamp_order": stamps == sorted(stamps) and len(set(stamps)) == len(stamps),
        "node_counters": counters,
        "grids": grids,
        "samples": samples,  # RSS and the node's counters over time
    }


def print_summary(report: dict[str, Any]) -> None:
    acc, mem, lat = report["accounting"], report["memory"], report["latency_ms"]
    print(f"soak: {acc['sets_published']} sets at {report['settings']['rate_hz']} Hz in {report['stream_s']:.1f} s "
          f"({report['settings']['device']}, input {report['settings']['input_size']})")
    if "rss_after_first_grid_mb" in mem:
        print(f"  RSS after the first grid {mem['rss_after_first_grid_mb']:.0f} MiB, after the last "
              f"{mem['rss_after_last_grid_mb']:.0f} MiB ({mem['rss_growth_percent']:+.2f} %), peak "
              f"{mem['rss_peak_mb']:.0f} MiB")
    print(f"  sets in {acc['sets_in']}, grids out {acc['grids_out']}, dropped {acc['dropped']}, in flight "
          f"{acc['in_flight']}; synchroniser: {acc['sync_incomplete_sets']} incomplete, "
          f"{acc['sync_pending_sets']} pending, "
          f"{acc['messages_lost_in_transport']} messages lost before it")
    print(f"  accounted: {acc['accounted']} (unexplained {acc['unexplained']})")
    if lat["count"]:
        print(f"  latency stamp -> grid: median {lat['median']:.0f} ms, max {lat['max']:.0f} ms; first third "
              f"{lat['first_third_median']}, last third {lat['last_third_median']} (medians, ms)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=int, default=1000, help="camera sets to publish (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=12.0, help="sets per second (default: %(default)s)")
    parser.add_argument("--input-size", type=lambda s: tuple(int(v) for v in s.split("x")), default=(64, 192),
                        metavar="HxW", help="network input size, multiples of 32 (default: 64x192)")
    parser.add_argument("--device", default="cpu", help="node device (default: %(default)s)")
    parser.add_argument("--scene", type=Path, default=DEFAULT_SCENE, help="nuScenes sample scene folder")
    parser.add_argument("--sample-s", type=float, default=1.0, help="memory sampling period (default: %(default)s)")
    parser.add_argument("--settle-s", type=float, default=300.0,
                        help="longest wait for the node to finish after the stream (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=REPO / "out" / "soak" / "soak.json", help="report file")
    args = parser.parse_args(argv)
    if args.sets < 1 or args.rate <= 0:
        parser.error("--sets must be >= 1 and --rate positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    node = NodeProcess(node_command(args), args.json.with_suffix(".node.log"))
    listener = Listener(node.process.pid)
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: KeyboardInterrupt
    ros = rclpy.create_node("gsdocc_soak", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(ros)
    try:
        feed = SampleFeeder(ros, args.scene)
        ros.create_subscription(SemanticVoxelGrid, GRID_TOPIC, listener.on_grid,
                                QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        ros.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, listener.on_diagnostics, 10)
        publishers = [*feed.image_pubs.values(), *feed.info_pubs.values(), feed.tf_pub]
        ready = spin_until(executor, lambda: not node.alive() or (
            all(p.get_subscription_count() > 0 for p in publishers) and ros.count_publishers(GRID_TOPIC) > 0),
            READY_TIMEOUT_S)
        if not ready or not node.alive():
            raise RuntimeError(f"the node did not come up:\n{node.tail()}")
        feed.publish_static()
        spinner = threading.Thread(target=executor.spin, name="soak-spin", daemon=True)
        spinner.start()
        sampler = Sampler(node, listener, args.sample_s)
        duration = stream(feed, args.sets, args.rate, node)
        counters = settle(listener, args.settle_s)
        report = summarise(args, duration, sampler.stop(), list(listener.grids), counters)
    finally:
        executor.shutdown()
        ros.destroy_node()
        context.try_shutdown()
        print(f"node {node.stop()}", file=sys.stderr)
    with atomic_output(args.json) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    print_summary(report)
    print(f"wrote {args.json}")
    return 0 if report["accounting"]["accounted"] else 1


if __name__ == "__main__":
    sys.exit(main())
