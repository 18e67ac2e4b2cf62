"""The whole bench: the staged runs, the whole step, FLOPs against the matmul rate, memory, host waits, and the
period between sets as the node runs them.

Stage times are medians over the warm runs with their interquartile range; on CUDA each stage boundary
synchronises the device, and the whole step is timed again in separate runs without those synchronisations.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from typing import Any

import numpy as np
import torch
from sensor_msgs.msg import CompressedImage
from tqdm import tqdm

from gsdocc_ros.benchmark.config import BenchConfig, command_line
from gsdocc_ros.benchmark.flops import count_flops
from gsdocc_ros.benchmark.machine import live_tensor_mb, machine, machine_matmul_rate, peak_rss_mb, rss_mb
from gsdocc_ros.benchmark.step import (FRAME_ID, MARKER_LIFETIME_S, NETWORK_STAGES, STAGES, BenchSetup,
                                       build_runner, captured_step, decoded_frames, instrumented, make_setup,
                                       output_grid, run_step)
from gsdocc_ros.benchmark.timing import StageClock, summarise
from gsdocc_ros.pipeline.acceleration import compile_static_stages
from gsdocc_ros.pipeline.frames import CameraFrame
from gsdocc_ros.pipeline.grid import FREE_INDEX
from gsdocc_ros.pipeline.host_sync import HostSyncAudit, cuda_sync_warnings
from gsdocc_ros.pipeline.prefetch import Prefetcher
from gsdocc_ros.ros.conversions import grid_to_message
from gsdocc_ros.ros.markers import build_markers_cdr


@dataclasses.dataclass
class Measurements:
    """What the timed part of the bench collected."""

    stage_runs: dict[str, list[float]]
    """Milliseconds per stage and run."""
    network_cpu_runs: list[float]
    """Process CPU milliseconds of the network stages per run."""
    step_runs: list[float]
    """Milliseconds of the whole step per run."""
    memory: dict[str, Any]
    flops: dict[str, Any]
    matmul: dict[str, Any]
    """The best of the matrix-product rates measured just before and just after the timed runs."""
    warmup_runs: list[float]
    """Milliseconds of the whole step per warm-up run (with --compile, the first one compiles)."""


def measure_steps(setup: BenchSetup, clock: StageClock, config: BenchConfig) -> Measurements:
    """FLOP-counting step, warm-up, then the timed runs with memory and the matmul rate around them."""
    device = setup.runner.device
    stage_runs: dict[str, list[float]] = {stage: [] for stage in STAGES}
    memory: dict[str, Any] = {}
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with instrumented(setup.runner, clock):  # eager, so that every aten op is counted
            flops = count_flops(setup.runner.model, lambda: captured_step(setup, clock, config.decoder))
        if config.compile is not None:
            compile_static_stages(setup.runner.model, mode=None if config.compile == "default" else config.compile)
    with torch.inference_mode(), instrumented(setup.runner, clock):
        warmup_runs = [run_step(setup, clock, config.decoder)
                       for _ in tqdm(range(config.warmup), desc="warm-up", leave=False, disable=config.quiet)]
        if device.type == "cuda":
            memory["peak_allocated_all_steps_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
            memory["allocated_before_mb"] = torch.cuda.memory_allocated(device) / 1e6
            torch.cuda.reset_peak_memory_stats(device)
        rates = [machine_matmul_rate(device, config.precision)]
        step_runs, network_cpu_runs, rss_runs, live_runs = [], [], [], []
        for _ in tqdm(range(config.runs), desc="runs", leave=False, disable=config.quiet):
            clock.times, clock.cpu_times = {}, {}
            step_runs.append(run_step(setup, clock, config.decoder))
            for stage in STAGES:
                stage_runs[stage].append(clock.times[stage])
            network_cpu_runs.append(sum(clock.cpu_times[stage] for stage in NETWORK_STAGES))
            rss_runs.append(rss_mb())
            if device.type == "cpu":
                live_runs.append(live_tensor_mb())
        rates.append(machine_matmul_rate(device, config.precision))
        matmul = max(rates, key=lambda rate: rate["gflops"])
        matmul["measured_gflops"] = [rate["gflops"] for rate in rates]
        matmul["gflops_per_cpu_s"] = max(rate["gflops_per_cpu_s"] for rate in rates)
        memory["rss_after_each_run_mb"] = rss_runs
        memory["rss_growth_mb"] = rss_runs[-1] - rss_runs[0]  # from the end of the first run: allocator settling
        if device.type == "cpu":
            memory["live_tensors_after_each_run_mb"] = live_runs
            memory["live_tensor_growth_mb"] = live_runs[-1] - live_runs[0]
        memory["peak_rss_mb"] = peak_rss_mb()
        if device.type == "cuda":
            memory["allocated_after_mb"] = torch.cuda.memory_allocated(device) / 1e6
            memory["allocated_growth_mb"] = memory["allocated_after_mb"] - memory["allocated_before_mb"]
            memory["peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
            memory["peak_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 1e6
            clock.sync = False  # the whole step again, without a synchronisation at every stage boundary
            step_runs = [run_step(setup, clock, config.decoder) for _ in range(config.runs)]
            clock.sync = True
    return Measurements(stage_runs=stage_runs, network_cpu_runs=network_cpu_runs, step_runs=step_runs,
                        memory=memory, flops=flops, matmul=matmul, warmup_runs=warmup_runs)


def host_syncs(setup: BenchSetup, clock: StageClock, decoder: str) -> dict[str, Any]:
    """The operations of one (untimed) step that would make the host wait for a GPU, and on CUDA the waits the
    driver reports (the copy of the result is the one expected)."""
    with torch.inference_mode(), instrumented(setup.runner, clock), HostSyncAudit() as audit:
        run_step(setup, clock, decoder)
    out: dict[str, Any] = {"audited_ops": audit.report(), "audited_count": sum(audit.found.values())}
    if setup.runner.device.type == "cuda":
        clock.sync = False  # the bench's own stage synchronisation is not the step's
        with torch.inference_mode(), instrumented(setup.runner, clock):
            out["cuda_sync_warnings"] = cuda_sync_warnings(lambda: run_step(setup, clock, decoder))
        clock.sync = True
    return out


def measure_pipelined(setup: BenchSetup, decoder: str, runs: int) -> dict[str, Any]:
    """The node's arrangement (pipeline.prefetch): a set is decoded on the prepare thread while the previous one
    is in the network, and a new set is always waiting, as from cameras faster than the network. Returns the
    period between finished sets (the first one, which had nothing to overlap, is left out) and the node overhead
    of each period: the period less that set's network time (the runner's, softmax/argmax and copy included), so
    that both come from the same run."""
    finished: list[float] = []
    network_ms: list[float] = []
    errors: list[Exception] = []
    done = threading.Condition()

    def infer(prepared: tuple[list[CameraFrame], int]) -> None:
        prefetcher.submit(setup.messages)  # the next set has arrived
        frames, stamp_ns = prepared
        result = setup.runner.step(frames, setup.ego2global, stamp_ns)
        grid = output_grid(setup, result)
        grid_to_message(grid, FRAME_ID, setup.runner.source)
        build_markers_cdr(grid, FRAME_ID, MARKER_LIFETIME_S)
        with done:
            finished.append(time.perf_counter())
            network_ms.append(result.timings_ms["network"])
            done.notify_all()

    def on_error(stage: str, error: Exception) -> None:
        with done:
            errors.append(error)
            done.notify_all()

    prefetcher: Prefetcher[list[CompressedImage], tuple[list[CameraFrame], int]] = Prefetcher(
        lambda _: decoded_frames(setup, decoder), infer, on_error, name="gsdocc-bench")
    prefetcher.start()
    try:
        prefetcher.submit(setup.messages)
        with done:
            done.wait_for(lambda: len(finished) > runs or errors)
    finally:
        prefetcher.stop()
    if errors:
        raise errors[0]
    periods = [(b - a) * 1e3 for a, b in zip(finished, finished[1:])][:runs]
    overheads = [period - network for period, network in zip(periods, network_ms[1:])]
    period = summarise(periods)
    return {"period_ms": period, "fps": 1e3 / period["median"], "network_ms": summarise(network_ms[1:runs + 1]),
            "node_overhead_ms": statistics.median(overheads),
            "node_overhead_fraction": statistics.median(o / p for o, p in zip(overheads, periods)),
            "what": "node arrangement: decode of set k+1 on the prepare thread during the network of set k"}


def bench(config: BenchConfig) -> dict[str, Any]:
    """Run the whole benchmark described by ``config``; returns the result tree written as JSON."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    runner, weights = build_runner(config)
    setup = make_setup(runner, config.scene, config.labels)
    clock = StageClock(device)
    measured = measure_steps(setup, clock, config)
    stages = {stage: summarise(values) for stage, values in measured.stage_runs.items()}
    network = summarise([sum(measured.stage_runs[stage][i] for stage in NETWORK_STAGES)
                         for i in range(config.runs)])
    step = summarise(measured.step_runs)
    overhead = step["median"] - network["median"]
    flops, matmul = measured.flops, measured.matmul
    achieved = flops["network"] / network["median"] / 1e6  # GFLOP/s
    flops["per_stage_gflops_per_s"] = {stage: flops["per_stage"][stage] / stages[stage]["median"] / 1e6
                                       for stage in NETWORK_STAGES}
    result: dict[str, Any] = {
        "command": command_line(config),
        "machine": machine(device),
        "config": {"device": str(device), "precision": config.precision, "input_size": list(config.input_size),
                   "runs": config.runs, "warmup": config.warmup, "weights": weights,
                   "scene": config.scene.name, "jpeg_decoder": config.decoder, "output_labels": setup.labels_source,
                   "drawn_voxels": int(np.count_nonzero(setup.output_labels != FREE_INDEX)),
                   "preprocess": "pillow" if runner.preprocessor is None else "torch",
                   "splat": runner.model.forward_projection.splat,
                   "channels_last": config.channels_last, "compile": config.compile,
                   "cudnn_benchmark": device.type == "cuda" and torch.backends.cudnn.benchmark,
                   "whole_step_timing": ("separate runs without per-stage synchronisation" if device.type == "cuda"
                                         else "the staged runs (nothing to synchronise on CPU)")},
        "warmup_step_ms": measured.warmup_runs,
        "stages_ms": stages,
        "network_ms": network,
        "step_ms": step,
        "fps": 1e3 / step["median"],
        "network_fps": 1e3 / network["median"],
        "node_overhead_ms": overhead,
        "node_overhead_fraction": overhead / step["median"],
        "flops": flops,
        "flop_rate": {"achieved_gflops": achieved, "matmul": matmul, "fraction": achieved / matmul["gflops"],
                      "fraction_best_run": flops["network"] / network["min"] / 1e6 / matmul["gflops"],
                      "fraction_of_cpu_time": (flops["network"] / statistics.median(measured.network_cpu_runs) / 1e6
                                               / matmul["gflops_per_cpu_s"]) if device.type == "cpu" else None},
        "memory": measured.memory,
        "host_syncs": host_syncs(setup, clock, config.decoder),
    }
    with torch.inference_mode():
        result["pipelined"] = measure_pipelined(setup, config.decoder, config.runs)
    return result
