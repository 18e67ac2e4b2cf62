"""Interleaved A/B of the runtimes against the torch path: one run, same frames, same decisions, same machine.

Every round steps each runner once on the same real camera set and ego pose (the ego drives on, 0.5 s per
round, so the history is live), in an order that rotates every round so none always runs first after the
others warmed the caches. Reported per backend: the runner's network time (graph inputs, the run, the cache
commit; the torch path's model forward, softmax/argmax and copy) and whole step, the speed-up over torch, the
largest logits difference and the share of equal labels against torch in the same round, and the peak RSS of
a separate process that builds only that backend and runs two steps (one process per backend, so the peaks do
not mask each other).
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.pipeline.frames import load_sample_frames
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, StepResult, load_model

ROUND_S = 0.5
SPEED_MPS = 10.0


def make_runner(model: torch.nn.Module, args: argparse.Namespace, backend: str) -> OccupancyRunner:
    """A runner of ``backend`` on the bench's device and precision (every runner shares ``model``)."""
    return OccupancyRunner(model, RunnerConfig(device=args.device, precision=args.precision, backend=backend,
                                               graph_dir=str(args.graph_dir or ""), cadence="every_frame",
                                               channels_last=not args.no_channels_last))


def drive(sample: Any, k: int) -> tuple[np.ndarray, int]:
    """Ego pose and stamp of round ``k``: the sample's pose driven forward SPEED_MPS for k rounds."""
    pose = sample.key_ego2global.copy()
    pose[:3, 3] += pose[:3, :3] @ np.array([SPEED_MPS * ROUND_S * k, 0.0, 0.0])
    return pose, sample.stamp_ns + round(k * ROUND_S * 1e9)


def step_with_logits(runner: OccupancyRunner, sample: Any, k: int) -> tuple[StepResult, np.ndarray]:
    """One step of ``runner`` at round ``k`` and the logits it produced."""
    pose, stamp = drive(sample, k)
    if runner.graph is not None:
        result = runner.step(sample.frames, pose, stamp)
        return result, runner.graph.last_outputs["logits"]
    captured: list[np.ndarray] = []
    hook = runner.model.occupancy_head.register_forward_hook(
        lambda module, inputs, out: captured.append(out.float().cpu().numpy()))
    try:
        result = runner.step(sample.frames, pose, stamp)
    finally:
        hook.remove()
    return result, captured[0]


def peak_rss_child(args: argparse.Namespace, backend: str, queue: multiprocessing.Queue) -> None:
    """In a fresh process: build the model and one runner of ``backend``, run two steps, report peak RSS (MB)."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model, _ = load_model(args.checkpoint, ModelConfig.for_input_size(*args.input_size), allow_random_weights=True,
                          seed=args.seed)
    runner = make_runner(model, args, backend)
    sample = load_sample_frames(args.scene)
    for k in range(2):
        step_with_logits(runner, sample, k)
    queue.put(high_water_rss_mb())


def high_water_rss_mb() -> float:
    """This process's peak RSS in MB from /proc/self/status (VmHWM). Not getrusage: Linux carries ru_maxrss
    over execve, so a spawned child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_rss_mb(args: argparse.Namespace, backend: str) -> float:
    """Peak RSS of a separate process running ``backend`` (see ``peak_rss_child``)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=peak_rss_child, args=(args, backend, queue))
    process.start()
    value = queue.get()
    process.join()
    return value


def compare_backends(args: argparse.Namespace) -> dict[str, Any]:
    """The A/B rounds of ``args.backend`` against torch and the per-backend memory; the JSON result tree."""
    from gsdocc_ros.benchmark.machine import machine
    from gsdocc_ros.benchmark.timing import summarise

    names = ["torch", *[name for name in args.backend if name != "torch"]]
    model, weights = load_model(args.checkpoint, ModelConfig.for_input_size(*args.input_size),
                                allow_random_weights=True, seed=args.seed)
    runners = {name: make_runner(model, args, name) for name in names}
    sample = load_sample_frames(args.scene)
    times: dict[str, dict[str, list[float]]] = {name: {"network": [], "step": []} for name in names}
    agreement: dict[str, dict[str, list[float]]] = {name: {"logits": [], "labels": []} for name in names[1:]}
    rounds = args.warmup + args.runs
    for k in tqdm(range(rounds), desc="A/B rounds", disable=args.quiet):
        order = names[k % len(names):] + names[:k % len(names)]
        outputs = {name: step_with_logits(runners[name], sample, k) for name in order}
        reference, reference_logits = outputs["torch"]
        for name in names:
            result, logits = outputs[name]
            if k >= args.warmup:
                times[name]["network"].append(result.timings_ms["network"])
                times[name]["step"].append(sum(result.timings_ms.values()))
            if name != "torch":
                agreement[name]["logits"].append(float(np.abs(logits - reference_logits).max()))
                agreement[name]["labels"].append(float((result.grid.labels == reference.grid.labels).mean()))
    torch_network = summarise(times["torch"]["network"])["median"]
    backends: dict[str, Any] = {}
    for name in names:
        network = summarise(times[name]["network"])
        entry = {"network_ms": network, "step_ms": summarise(times[name]["step"]),
                 "speedup_vs_torch": torch_network / network["median"]}
        if name != "torch":
            entry.update(max_abs_logits_diff=max(agreement[name]["logits"]),
                         min_labels_equal=min(agreement[name]["labels"]))
        backends[name] = entry
    del runners, model
    for name in names:
        backends[name]["peak_rss_mb"] = peak_rss_mb(args, name)
    height, width = args.input_size
    command = (f"gsdocc bench --device {args.device} --precision {args.precision} --input-size {height}x{width} "
               f"--runs {args.runs} --warmup {args.warmup} --backend {','.join(args.backend)} "
               f"--graph-dir {args.graph_dir}")
    return {"command": command, "machine": machine(torch.device(args.device)),
            "config": {"device": args.device, "precision": args.precision, "input_size": list(args.input_size),
                       "runs": args.runs, "warmup": args.warmup, "weights": weights, "scene": args.scene.name,
                       "graph_dir": str(args.graph_dir), "torch_channels_last": not args.no_channels_last,
                       "order": "rotating every round"},
            "backends": backends}


def format_backends(result: dict[str, Any]) -> str:
    """The comparison as a text table."""
    lines = [f"{'backend':22s} {'network ms':>11s} {'IQR':>15s} {'step ms':>9s} {'x torch':>8s} "
             f"{'max|dlogit|':>12s} {'labels eq':>10s} {'peak RSS MB':>12s}"]
    for name, entry in result["backends"].items():
        network = entry["network_ms"]
        logits = f"{entry['max_abs_logits_diff']:.1e}" if "max_abs_logits_diff" in entry else "-"
        labels = f"{100 * entry['min_labels_equal']:.4f}%" if "min_labels_equal" in entry else "-"
        lines.append(f"{name:22s} {network['median']:11.0f} {network['q1']:7.0f}-{network['q3']:<7.0f} "
                     f"{entry['step_ms']['median']:9.0f} {entry['speedup_vs_torch']:8.2f} {logits:>12s} "
                     f"{labels:>10s} {entry['peak_rss_mb']:12.0f}")
    return "\n".join(lines)
