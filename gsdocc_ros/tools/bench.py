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
peak memory (process RSS on CPU, allocated memory on CUDA), and A/B pairs timed alternately in the same run.
Random seeded weights unless --checkpoint: timings do not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sensor_msgs.msg import CompressedImage
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from gsdocc_ros.deploy.backends import BACKENDS
from gsdocc_ros.deploy.bench_backends import compare_backends, format_backends
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.reparam_conv3d import UniRepLKNetBlock
from gsdocc_ros.pipeline.acceleration import compile_static_stages, to_channels_last
from gsdocc_ros.pipeline.frames import CameraFrame, load_sample_frames
from gsdocc_ros.pipeline.grid import FREE_INDEX, OccupancyGrid
from gsdocc_ros.pipeline.preprocess import IMAGE_STD_RGB, preprocess_images
from gsdocc_ros.pipeline.host_sync import HostSyncAudit, cuda_sync_warnings
from gsdocc_ros.pipeline.prefetch import Prefetcher
from gsdocc_ros.pipeline.runner import PRECISIONS, SPLATS, OccupancyRunner, RunnerConfig, StepResult, load_model
from gsdocc_ros.pipeline.torch_preprocess import TorchPreprocessor
from gsdocc_ros.ros.image_decode import DEFAULT_JPEG_DECODER, decode_executor, decode_image, decode_threads
from gsdocc_ros.ros.conversions import grid_to_message
from gsdocc_ros.ros.markers import build_markers, build_markers_cdr, build_markers_reference
from gsdocc_ros.tools.cli import ToolError

VERB = "bench"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DEFAULT_SCENE = SHARED_DATA / "nuscenes_sample" / "scene-0061_ca9a282c"
DEFAULT_LABELS = SHARED_DATA / "occ3d_sample" / "labels.npz"
OFFICIAL_SIZES = ("256x704", "512x1408")

MODEL_STAGES = {"encode_images": "image_encoder", "estimate_depth": "depth_net", "lift": "bev_pool",
                "fuse": "temporal_fusion", "encode_bev": "bev_encoder", "head": "occ_head"}
"""GSDOCC stage method -> stage name; forward calls them in this order."""
NETWORK_STAGES = tuple(MODEL_STAGES.values())
STAGES = ("decode", "preprocess", *NETWORK_STAGES, "postprocess", "grid", "grid_message", "markers")
"""Every timed stage of a step, in order; postprocess = softmax, argmax, transposes and the device -> host copy."""
FLOP_MODULES = {"image_encoder": ("img_backbone", "img_neck"), "depth_net": ("depth_net",),
                "bev_pool": ("forward_projection",),
                "temporal_fusion": ("history_keyframe_time_conv", "history_keyframe_cat_conv"),
                "bev_encoder": ("img_bev_encoder_backbone", "img_bev_encoder_neck"), "occ_head": ("occupancy_head",)}
"""Stage -> the GSDOCC submodules whose counted FLOPs belong to it."""
MARKER_LIFETIME_S = 1.0
FRAME_ID = "base_link"


# ------------------------------------------------------------------------------------------------ timing helpers

def summarise(values_ms: list[float]) -> dict[str, Any]:
    """Median, quartiles, min and max of a list of milliseconds (and the list itself)."""
    ordered = sorted(values_ms)
    q1, q3 = (np.percentile(ordered, [25, 75]).tolist() if len(ordered) > 1 else (ordered[0], ordered[0]))
    return {"median": statistics.median(ordered), "q1": q1, "q3": q3, "min": ordered[0], "max": ordered[-1],
            "runs": list(values_ms)}


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (benchmark timing only); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_ms() -> float:
    """Process CPU time (user + system, all threads) so far, in milliseconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1e3


def timed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in milliseconds, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


class StageClock:
    """Wall (and process CPU) time per named stage of the current run; synchronises CUDA at each boundary when
    ``sync``. On a shared CPU, CPU time counts the work done, wall time also the waiting for other processes."""

    def __init__(self, device: torch.device, sync: bool = True) -> None:
        self.device = device
        self.sync = sync
        self.times: dict[str, float] = {}
        self.cpu_times: dict[str, float] = {}
        self.captured: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self.capture = False

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent inside the block to stage ``name``."""
        if self.sync:
            synchronize(self.device)
        start, cpu_start = time.perf_counter(), cpu_ms()
        yield
        if self.sync:
            synchronize(self.device)
        self.times[name] = self.times.get(name, 0.0) + (time.perf_counter() - start) * 1e3
        self.cpu_times[name] = self.cpu_times.get(name, 0.0) + cpu_ms() - cpu_start

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed as stage ``name``; its arguments and result are kept while ``capture`` is set."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                out = fn(*args, **kwargs)
            if self.capture:
                self.captured[name] = (args, out)
            return out
        return timed


@contextlib.contextmanager
def instrumented(runner: OccupancyRunner, clock: StageClock) -> Iterator[None]:
    """Time the runner's preprocessing and the model's stage methods with ``clock`` (instance attributes)."""
    targets = [(runner, "prepare_inputs", "preprocess")] + [(runner.model, m, s) for m, s in MODEL_STAGES.items()]
    shadowed = [owner.__dict__.get(method) for owner, method, _ in targets]  # instance overrides to put back
    for owner, method, stage in targets:
        setattr(owner, method, clock.wrap(stage, getattr(owner, method)))
    try:
        yield
    finally:
        for (owner, method, _), previous in zip(targets, shadowed):
            if previous is None:
                delattr(owner, method)
            else:
                setattr(owner, method, previous)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The runner's autocast for ``precision`` (a no-op for fp32), for the A/B pairs run outside the runner."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def ab_pair(baseline: Callable[[], object], optimised: Callable[[], object], runs: int,
            device: torch.device) -> dict[str, Any]:
    """Time both variants alternately (one warm-up call each); speed-up = baseline median / optimised median."""
    baseline(), optimised()
    times: dict[str, list[float]] = {"baseline": [], "optimised": []}
    for _ in range(runs):
        times["baseline"].append(timed_ms(baseline, device))
        times["optimised"].append(timed_ms(optimised, device))
    out = {f"{name}_ms": summarise(values) for name, values in times.items()}
    out["speedup"] = out["baseline_ms"]["median"] / out["optimised_ms"]["median"]
    return out


# ------------------------------------------------------------------------------------------------ machine

def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def rss_mb() -> float:
    """Current resident set size of this process in MB (/proc/self/statm)."""
    with contextlib.suppress(OSError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    return float("nan")


def live_tensor_mb() -> float:
    """MB of CPU tensor storage reachable from Python objects (each storage once): exact where RSS is blurred by
    the allocator, so a buffer re-made or kept per step shows as growth."""
    storages: dict[int, int] = {}
    with warnings.catch_warnings():  # isinstance on lazy module attributes may warn about deprecations
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor) and obj.device.type == "cpu" and obj.layout == torch.strided:
                    storage = obj.untyped_storage()
                    storages[storage.data_ptr()] = storage.nbytes()
            except (RuntimeError, ReferenceError):  # fake tensors left by a torch.compile trace, dead weak proxies
                continue
    return sum(storages.values()) / 1e6


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (getrusage reports KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"cpu": cpu_model(), "nproc": os.cpu_count(),
                            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                            "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_mb=props.total_memory / 1e6, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, runs: int = 5) -> dict[str, Any]:
    """Achieved FLOP rate of a size x size matrix product on ``device`` in ``dtype`` (median of ``runs``)."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.mm(a, b, out=out)
    cpu_start = cpu_ms()
    median = statistics.median(timed_ms(lambda: torch.mm(a, b, out=out), device) for _ in range(runs))
    cpu_per_run = (cpu_ms() - cpu_start) / runs
    return {"gflops": 2 * size**3 / median / 1e6, "size": size, "dtype": str(dtype).removeprefix("torch."),
            "median_ms": median, "gflops_per_cpu_s": 2 * size**3 / cpu_per_run / 1e6}


def machine_matmul_rate(device: torch.device, precision: str) -> dict[str, Any]:
    """The device's matrix-product rate in the math mode the network's convolutions use at ``precision``
    (fp32 on CUDA: TF32 when cuDNN allows it, as it does by default)."""
    tf32 = device.type == "cuda" and precision == "fp32" and torch.backends.cudnn.allow_tf32
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        rate = matmul_rate(device, PRECISIONS[precision], 8192 if device.type == "cuda" else 2048)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    rate["tf32"] = tf32
    return rate


# ------------------------------------------------------------------------------------------------ the bench

@dataclasses.dataclass
class BenchSetup:
    """Everything one bench run needs, made once before timing."""

    runner: OccupancyRunner
    messages: list[CompressedImage]
    """The six real JPEGs as the node receives them, model camera order."""
    frames: list
    """CameraFrames with calibration (their images are replaced by each run's decode)."""
    ego2global: np.ndarray
    output_labels: np.ndarray
    """uint8 (X, Y, Z) labels the output messages are built from."""
    labels_source: str
    stamp_ns: int
    decoders: ThreadPoolExecutor
    """The node's image decoding threads (image_decode.decode_executor)."""


def load_messages(scene: Path, cameras: dict[str, dict]) -> list[CompressedImage]:
    """CompressedImage messages holding the scene's original JPEG bytes, model camera order."""
    messages = []
    for name, record in cameras.items():
        msg = CompressedImage(format="jpeg", data=(scene / record["image"]).read_bytes())
        msg.header.frame_id = name
        messages.append(msg)
    return messages


def decode_set(setup: BenchSetup, decoder: str) -> list[np.ndarray]:
    """The six images decoded side by side on the node's decoding threads."""
    return list(setup.decoders.map(lambda msg: decode_image(msg, decoder), setup.messages))


def decoded_frames(setup: BenchSetup, decoder: str) -> tuple[list[CameraFrame], int]:
    """The six images decoded as the node does, in the sample's frames; the next keyframe stamp."""
    images = decode_set(setup, decoder)
    setup.stamp_ns += round(setup.runner.config.history_step_s * 1e9)  # every run is a history step
    return [dataclasses.replace(frame, image=image) for frame, image in zip(setup.frames, images)], setup.stamp_ns


def output_grid(setup: BenchSetup, result: StepResult) -> OccupancyGrid:
    """The step's grid with the bench's output labels (the real Occ3D scene unless --labels predicted)."""
    return OccupancyGrid(labels=setup.output_labels, stamp_ns=result.grid.stamp_ns, geometry=result.grid.geometry,
                         confidence=result.grid.confidence, camera_mask=result.grid.camera_mask)


def run_step(setup: BenchSetup, clock: StageClock, decoder: str) -> float:
    """One camera set through decode, runner.step, message and markers; returns the whole step in ms."""
    runner = setup.runner
    synchronize(runner.device)
    start = time.perf_counter()
    with clock.stage("decode"):
        frames, stamp_ns = decoded_frames(setup, decoder)
    result = runner.step(frames, setup.ego2global, stamp_ns)
    middle = time.perf_counter()
    grid = output_grid(setup, result)
    resume = time.perf_counter()
    with clock.stage("grid_message"):
        grid_to_message(grid, FRAME_ID, runner.source)
    with clock.stage("markers"):
        build_markers_cdr(grid, FRAME_ID, MARKER_LIFETIME_S)
    end = time.perf_counter()
    network = sum(clock.times.get(stage, 0.0) for stage in NETWORK_STAGES)
    clock.times["postprocess"] = result.timings_ms["network"] - network
    clock.times["grid"] = result.timings_ms["postprocess"]
    return (middle - start + end - resume) * 1e3


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


def count_flops(setup: BenchSetup, clock: StageClock, decoder: str) -> dict[str, Any]:
    """Run one (untimed) step under the FLOP counter; FLOPs per stage, the splat counted as sparse."""
    model = setup.runner.model
    counter = FlopCounterMode(display=False)
    clock.capture = True
    with counter:
        run_step(setup, clock, decoder)
    clock.capture = False
    counts = counter.get_flop_counts()
    root = type(model).__name__
    per_stage = {stage: sum(sum(counts.get(f"{root}.{name}", {}).values()) for name in modules)
                 for stage, modules in FLOP_MODULES.items()}
    counted_splat = per_stage["bev_pool"]
    (depth, context, inputs), _ = clock.captured["bev_pool"]
    indices = model.forward_projection.pool_indices(inputs.rots, inputs.trans, inputs.intrins, inputs.post_rots,
                                                    inputs.post_trans, inputs.bda)
    # W (voxels x pixels, P non-zeros) @ context (pixels x C): 2 P C, plus one add per kept frustum point into W
    per_stage["bev_pool"] = 2 * indices.col.numel() * context.shape[2] + indices.depth_index.numel()
    total = counter.get_total_flops() - counted_splat + per_stage["bev_pool"]
    return {"network": total, "per_stage": per_stage, "splat_counted_as_dense": counted_splat,
            "method": "torch.utils.flop_counter.FlopCounterMode over one step (2 FLOPs per multiply-add); the sparse "
                      "BEV splat, which the counter sees as a dense mm, counted as 2 * nnz * C + K"}


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


def _randomise_statistics(module: nn.Module, seed: int) -> None:
    """Give every BN non-trivial statistics and the layer scale / GRN non-zero values, so a merge is a real test."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.running_mean.copy_(torch.randn(sub.num_features, generator=generator) * 0.1)
                sub.running_var.copy_(torch.rand(sub.num_features, generator=generator) + 0.5)
                sub.weight.copy_(1 + torch.randn(sub.num_features, generator=generator) * 0.1)
                sub.bias.copy_(torch.randn(sub.num_features, generator=generator) * 0.1)
        for name, param in module.named_parameters():
            if name == "gamma" or name.endswith(("act.1.gamma", "act.1.beta")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def ab_pairs(setup: BenchSetup, clock: StageClock, args: argparse.Namespace, cfg: ModelConfig) -> dict[str, Any]:
    """The A/B pairs, each timed alternately on the bench device with the same inputs, plus an output check."""
    runner, device, runs = setup.runner, setup.runner.device, args.ab_runs
    (depth, context, inputs), voxel_feat = clock.captured["bev_pool"]
    pairs: dict[str, Any] = {}

    training = UniRepLKNetBlock(cfg.context_channels, cfg.large_kernel)
    _randomise_statistics(training, seed=args.seed)
    merged = copy.deepcopy(training)
    merged.reparameterize()
    for block in (training, merged):
        block.to(device).eval()
        if runner.config.channels_last:  # the layout the model runs in
            to_channels_last(block)
    with torch.inference_mode(), autocast(device, args.precision):
        pair = ab_pair(lambda: training(voxel_feat), lambda: merged(voxel_feat), runs, device)
        a, b = training(voxel_feat).float(), merged(voxel_feat).float()
    pair.update(baseline="training-form UniRepLKNetBlock (dilated branches + BNs)", optimised="re-parameterised",
                max_abs_diff=float((a - b).abs().max()), rel_diff=float((a - b).norm() / b.norm()))
    pairs["reparam_block"] = pair

    view = runner.model.forward_projection
    sync_free = view.sync_free
    with torch.inference_mode(), autocast(device, args.precision):
        def pool(cached: bool = True, scatter: bool = False) -> torch.Tensor:
            view.use_index_cache, view.sync_free = cached, scatter
            return view(depth, context, inputs)
        try:
            pair = ab_pair(lambda: pool(cached=False), lambda: pool(cached=True), runs, device)
            pair["outputs_equal"] = bool(torch.equal(pool(cached=False), pool(cached=True)))
            scatter = ab_pair(lambda: pool(cached=True), lambda: pool(scatter=True), runs, device)
            scatter["max_abs_diff"] = float((pool(cached=True) - pool(scatter=True)).abs().max())
        finally:
            view.use_index_cache, view.sync_free = True, sync_free
    pair.update(baseline="BEV-pool indices recomputed every frame", optimised="indices precomputed per calibration")
    pairs["bev_pool_indices"] = pair
    scatter.update(baseline="sparse product with the cached indices", optimised="fixed-size scatter (no host sync)",
                   used_by_the_runner="scatter" if sync_free else "indices")
    pairs["bev_pool_scatter"] = scatter

    pair = ab_pair(lambda: [decode_image(msg, args.decoder) for msg in setup.messages],
                   lambda: decode_set(setup, args.decoder), runs, device)
    pair.update(baseline="the six images one after the other", optimised=f"side by side on "
                f"{decode_threads(len(setup.messages))} threads (image_decode.decode_executor)")
    pairs["decode_threads"] = pair

    decode = {name: (lambda name=name: [decode_image(msg, name) for msg in setup.messages])
              for name in ("pillow", args.decoder)}
    pair = ab_pair(decode["pillow"], decode[args.decoder], runs, device)
    diff = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(decode["pillow"](), decode[args.decoder]()))
    pair.update(baseline="Pillow JPEG decode of the six images", optimised=f"{args.decoder} (image_decode.decode_image)",
                max_abs_diff=diff)
    pairs["jpeg_decoder"] = pair

    grid = OccupancyGrid(labels=setup.output_labels, stamp_ns=setup.stamp_ns)
    pair = ab_pair(lambda: build_markers_reference(grid, FRAME_ID, MARKER_LIFETIME_S),
                   lambda: build_markers_cdr(grid, FRAME_ID, MARKER_LIFETIME_S), runs, device)
    pair.update(baseline="per-voxel loop (build_markers_reference)", optimised="vectorised CDR (build_markers_cdr)",
                drawn_voxels=int(np.count_nonzero(setup.output_labels != FREE_INDEX)),
                outputs_equal=build_markers(grid, FRAME_ID, MARKER_LIFETIME_S)
                == build_markers_reference(grid, FRAME_ID, MARKER_LIFETIME_S))
    pairs["markers"] = pair

    images = [frame.image for frame in setup.frames]
    on_device = TorchPreprocessor(cfg.image.input_size, device)
    pair = ab_pair(lambda: torch.from_numpy(preprocess_images(images, cfg.image.input_size)[0]).to(device),
                   lambda: on_device(images), runs, device)
    exact = preprocess_images(images, cfg.image.input_size)[0]
    levels = float(np.abs(on_device(images)[0].cpu().numpy() - exact).max() * min(IMAGE_STD_RGB))
    pair.update(baseline="Pillow preprocessing on the host + upload", optimised=f"torch preprocessing on {device}",
                max_abs_diff_levels=round(levels, 3))
    pairs["preprocess"] = pair
    return pairs


def make_setup(runner: OccupancyRunner, scene: Path, labels: Path | None) -> BenchSetup:
    """The bench inputs from a nuscenes_sample ``scene``; output labels from ``labels`` (an Occ3D labels.npz) or,
    when None, from one (untimed) step of ``runner``."""
    sample = load_sample_frames(scene)
    setup = BenchSetup(runner=runner, messages=load_messages(scene, sample.cameras), frames=sample.frames,
                       ego2global=sample.key_ego2global, output_labels=None, labels_source="predicted",
                       stamp_ns=sample.stamp_ns, decoders=decode_executor(len(sample.frames)))
    if labels is not None:
        with np.load(labels) as data:
            setup.output_labels = data["semantics"]
        setup.labels_source = f"{labels.name} (real Occ3D ground truth)"
    else:
        with torch.inference_mode():
            setup.output_labels = runner.step(sample.frames, setup.ego2global, setup.stamp_ns).grid.labels
    return setup


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


def measure_steps(setup: BenchSetup, clock: StageClock, args: argparse.Namespace) -> Measurements:
    """FLOP-counting step, warm-up, then the timed runs with memory and the matmul rate around them."""
    device = setup.runner.device
    stage_runs: dict[str, list[float]] = {stage: [] for stage in STAGES}
    memory: dict[str, Any] = {}
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with instrumented(setup.runner, clock):
            flops = count_flops(setup, clock, args.decoder)  # eager, so that every aten op is counted
        if args.compile is not None:
            compile_static_stages(setup.runner.model, mode=None if args.compile == "default" else args.compile)
    with torch.inference_mode(), instrumented(setup.runner, clock):
        warmup_runs = [run_step(setup, clock, args.decoder)
                       for _ in tqdm(range(args.warmup), desc="warm-up", leave=False, disable=args.quiet)]
        if device.type == "cuda":
            memory["peak_allocated_all_steps_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
            memory["allocated_before_mb"] = torch.cuda.memory_allocated(device) / 1e6
            torch.cuda.reset_peak_memory_stats(device)
        rates = [machine_matmul_rate(device, args.precision)]
        step_runs, network_cpu_runs, rss_runs, live_runs = [], [], [], []
        for _ in tqdm(range(args.runs), desc="runs", leave=False, disable=args.quiet):
            clock.times, clock.cpu_times = {}, {}
            step_runs.append(run_step(setup, clock, args.decoder))
            for stage in STAGES:
                stage_runs[stage].append(clock.times[stage])
            network_cpu_runs.append(sum(clock.cpu_times[stage] for stage in NETWORK_STAGES))
            rss_runs.append(rss_mb())
            if device.type == "cpu":
                live_runs.append(live_tensor_mb())
        rates.append(machine_matmul_rate(device, args.precision))
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
            step_runs = [run_step(setup, clock, args.decoder) for _ in range(args.runs)]
            clock.sync = True
    return Measurements(stage_runs=stage_runs, network_cpu_runs=network_cpu_runs, step_runs=step_runs,
                        memory=memory, flops=flops, matmul=matmul, warmup_runs=warmup_runs)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark described by ``args``; returns the result tree written as JSON."""
    device = torch.device(args.device)
    cfg = ModelConfig.for_input_size(*args.input_size)
    model, weights = load_model(args.checkpoint, cfg, allow_random_weights=True, seed=args.seed)
    runner = OccupancyRunner(model, RunnerConfig(device=args.device, precision=args.precision, splat=args.splat,
                                                 preprocess=args.preprocess, channels_last=not args.no_channels_last))
    setup = make_setup(runner, args.scene, args.labels)
    clock = StageClock(device)
    measured = measure_steps(setup, clock, args)
    stages = {stage: summarise(values) for stage, values in measured.stage_runs.items()}
    network = summarise([sum(measured.stage_runs[stage][i] for stage in NETWORK_STAGES) for i in range(args.runs)])
    step = summarise(measured.step_runs)
    overhead = step["median"] - network["median"]
    flops, matmul = measured.flops, measured.matmul
    achieved = flops["network"] / network["median"] / 1e6  # GFLOP/s
    flops["per_stage_gflops_per_s"] = {stage: flops["per_stage"][stage] / stages[stage]["median"] / 1e6
                                       for stage in NETWORK_STAGES}
    result: dict[str, Any] = {
        "command": command_line(args),
        "machine": machine(device),
        "config": {"device": str(device), "precision": args.precision, "input_size": list(args.input_size),
                   "runs": args.runs, "warmup": args.warmup, "ab_runs": args.ab_runs, "weights": weights,
                   "scene": args.scene.name, "jpeg_decoder": args.decoder, "output_labels": setup.labels_source,
                   "drawn_voxels": int(np.count_nonzero(setup.output_labels != FREE_INDEX)),
                   "preprocess": "pillow" if runner.preprocessor is None else "torch",
                   "splat": "scatter" if runner.model.forward_projection.sync_free else "indices",
                   "channels_last": not args.no_channels_last, "compile": args.compile,
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
        "host_syncs": host_syncs(setup, clock, args.decoder),
    }
    with torch.inference_mode():
        result["pipelined"] = measure_pipelined(setup, args.decoder, args.runs)
    if not args.no_ab:
        with torch.inference_mode():
            result["ab"] = ab_pairs(setup, clock, args, cfg)
    result["targets"] = targets(result, device, args.precision)
    return result


def targets(result: dict[str, Any], device: torch.device, precision: str) -> dict[str, Any]:
    """The issue's targets that apply to this device and precision, each with the measured value."""
    pipelined = result["pipelined"]["node_overhead_fraction"]
    out: dict[str, Any] = {"node_overhead_at_most_5pct": {"value": result["node_overhead_fraction"],
                                                         "met": result["node_overhead_fraction"] <= 0.05},
                           "node_overhead_at_most_5pct_pipelined": {"value": pipelined, "met": pipelined <= 0.05}}
    if device.type == "cpu":
        fraction = result["flop_rate"]["fraction"]
        out["flop_rate_at_least_half_of_matmul"] = {"value": fraction, "met": fraction >= 0.5}
    else:
        need = 20.0 if precision == "fp32" else 40.0
        out[f"fps_at_least_{need:.0f}"] = {"value": result["fps"], "met": result["fps"] >= need}
        peak = max(result["memory"]["peak_allocated_all_steps_mb"], result["memory"]["peak_allocated_mb"])
        out["peak_gpu_memory_below_4759_mb"] = {"value": peak, "met": peak < 4759}
    memory = result["memory"]
    if device.type == "cuda":
        waits = len(result["host_syncs"]["cuda_sync_warnings"])
        out["no_host_sync_but_the_result_copy"] = {"value": result["host_syncs"]["audited_count"] + waits,
                                                   "met": result["host_syncs"]["audited_count"] == 0 and waits <= 1}
    if device.type == "cuda":  # live tensors: any leak shows exactly
        out["no_growth_over_runs"] = {"value_mb": memory["allocated_growth_mb"],
                                      "met": memory["allocated_growth_mb"] < 1.0}
    else:  # live tensor storage, not RSS: glibc keeps or returns freed blocks by tens of MB between runs
        out["no_growth_over_runs"] = {"value_mb": memory["live_tensor_growth_mb"],
                                      "met": memory["live_tensor_growth_mb"] < 0.1}
    return out


# ------------------------------------------------------------------------------------------------ output

def format_table(result: dict[str, Any]) -> str:
    """The plain-text report printed by the command."""
    cfg, machine_info = result["config"], result["machine"]
    lines = [f"gsdocc bench: {cfg['device']} {cfg['precision']} {cfg['input_size'][0]}x{cfg['input_size'][1]}, "
             f"{cfg['runs']} runs after {cfg['warmup']} warm-up, preprocess {cfg['preprocess']}, "
             f"decoder {cfg['jpeg_decoder']}, {cfg['drawn_voxels']} drawn voxels ({cfg['output_labels']})",
             f"machine: {machine_info.get('gpu', machine_info['cpu'])}, {machine_info['nproc']} CPUs, "
             f"{machine_info['torch_threads']} torch threads, torch {machine_info['torch']}; weights: {cfg['weights']}",
             "", f"{'stage':16s} {'median ms':>10s} {'q1 ms':>10s} {'q3 ms':>10s} {'min ms':>10s} {'max ms':>10s}"]

    def row(name: str, stats: dict[str, Any]) -> str:
        return (f"{name:16s} {stats['median']:10.1f} {stats['q1']:10.1f} {stats['q3']:10.1f} {stats['min']:10.1f} "
                f"{stats['max']:10.1f}")

    lines += [row(stage, stats) for stage, stats in result["stages_ms"].items()]
    lines += [row("network", result["network_ms"]), row("whole step", result["step_ms"]), ""]
    flops, rate, memory = result["flops"], result["flop_rate"], result["memory"]
    lines.append(f"FPS {result['fps']:.3f} (network alone {result['network_fps']:.3f}); node overhead "
                 f"{result['node_overhead_ms']:.1f} ms = {100 * result['node_overhead_fraction']:.1f} % of the step")
    pipelined = result["pipelined"]
    lines.append(f"as the node runs it (decode of the next set during the network): one set every "
                 f"{pipelined['period_ms']['median']:.1f} ms ({pipelined['fps']:.3f} FPS), node overhead "
                 f"{pipelined['node_overhead_ms']:.1f} ms = {100 * pipelined['node_overhead_fraction']:.1f} %")
    lines.append(f"network {flops['network'] / 1e9:.1f} GFLOP, achieved {rate['achieved_gflops']:.1f} GFLOP/s; "
                 f"{rate['matmul']['dtype']}{' (TF32)' if rate['matmul']['tf32'] else ''} "
                 f"{rate['matmul']['size']}^2 matmul {rate['matmul']['gflops']:.1f} GFLOP/s; "
                 f"fraction {rate['fraction']:.2f}, best run {rate['fraction_best_run']:.2f}"
                 + (f", per CPU-second (robust to other load) {rate['fraction_of_cpu_time']:.2f}"
                    if rate["fraction_of_cpu_time"] is not None else ""))
    lines.append("per stage GFLOP/s: " + ", ".join(f"{stage} {value:.0f}"
                                                   for stage, value in flops["per_stage_gflops_per_s"].items()))
    text = (f"memory: peak RSS {memory['peak_rss_mb']:.0f} MB, RSS growth from the first to the last run "
            f"{memory['rss_growth_mb']:+.1f} MB")
    if "live_tensor_growth_mb" in memory:
        text += (f", live tensors {memory['live_tensors_after_each_run_mb'][-1]:.0f} MB "
                 f"({memory['live_tensor_growth_mb']:+.1f} MB)")
    if "peak_allocated_mb" in memory:
        text += (f"; CUDA peak allocated {memory['peak_allocated_mb']:.0f} MB in the runs, "
                 f"{memory['peak_allocated_all_steps_mb']:.0f} MB from the first step (reserved "
                 f"{memory['peak_reserved_mb']:.0f} MB), growth {memory['allocated_growth_mb']:+.1f} MB")
    lines.append(text)
    syncs = result["host_syncs"]
    lines.append(f"operations that would make the host wait for a GPU, one step: {syncs['audited_count']}"
                 + "".join(f"\n  {count} x {where}" for where, count in syncs["audited_ops"].items())
                 + (f"; CUDA sync debug mode: {len(syncs['cuda_sync_warnings'])} wait(s)"
                    if "cuda_sync_warnings" in syncs else ""))
    if "ab" in result:
        lines += ["", f"{'A/B (baseline vs optimised)':30s} {'baseline ms':>12s} {'optimised ms':>13s} "
                      f"{'speed-up':>9s}  check"]
        for name, pair in result["ab"].items():
            check = ", ".join(f"{key} {value}" for key, value in pair.items()
                              if key in ("max_abs_diff", "rel_diff", "outputs_equal", "max_abs_diff_levels"))
            lines.append(f"{name:30s} {pair['baseline_ms']['median']:12.2f} {pair['optimised_ms']['median']:13.2f} "
                         f"{pair['speedup']:9.2f}  {check}")
    lines += ["", "targets: " + "; ".join(f"{name} {'met' if item['met'] else 'NOT met'}"
                                          for name, item in result["targets"].items())]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ command line

def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this measurement (defaults written out)."""
    height, width = args.input_size
    words = [f"gsdocc bench --device {args.device} --precision {args.precision} --input-size {height}x{width}",
             f"--runs {args.runs} --warmup {args.warmup} --ab-runs {args.ab_runs}", f"--decoder {args.decoder}"]
    words += [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in ("threads", "checkpoint")
              if getattr(args, name) is not None]
    words += [f"--preprocess {args.preprocess}"] * (args.preprocess != "auto")
    words += [f"--splat {args.splat}"] * (args.splat != "auto")
    words += [f"--compile {args.compile}"] * (args.compile is not None)
    words += ["--no-channels-last"] * args.no_channels_last + ["--no-ab"] * args.no_ab
    words += ["--labels predicted"] * (args.labels is None)
    return " ".join(words)


def _backends(text: str) -> list[str]:
    """'onnxruntime,openvino' -> the backend names, each one of BACKENDS."""
    names = text.split(",")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    return names


def _input_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive multiples of 32 (the image backbone's stride)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x704, got {text!r}") from None
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise argparse.ArgumentTypeError(f"height and width must be positive multiples of 32, got {text!r}")
    return height, width


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc bench``."""
    parser = subparsers.add_parser(VERB, help="time the inference step stage by stage on one device",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device to measure (default cpu)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="fp32, or fp16/bf16 autocast (fp16 on CUDA only); default fp32")
    parser.add_argument("--input-size", type=_input_size, default=(256, 704), metavar="HxW",
                        help=f"network input size; the official ones are {' and '.join(OFFICIAL_SIZES)} "
                             "(default 256x704)")
    parser.add_argument("--runs", type=_positive, default=3, help="timed runs (default 3)")
    parser.add_argument("--warmup", type=_count, default=1,
                        help="warm-up runs after the FLOP-counting run, which is never timed (default 1)")
    parser.add_argument("--ab-runs", type=_positive, default=3, help="timed calls per A/B variant (default 3)")
    parser.add_argument("--no-ab", action="store_true", help="skip the A/B pairs")
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
    parser.add_argument("--decoder", choices=("simplejpeg", "pillow"), default=DEFAULT_JPEG_DECODER,
                        help=f"JPEG decoder of the step (default {DEFAULT_JPEG_DECODER}, what the node uses)")
    parser.add_argument("--preprocess", choices=("auto", "pillow", "torch"), default="auto",
                        help="preprocessing path of the runner (default auto: torch on CUDA, exact Pillow on CPU)")
    parser.add_argument("--splat", choices=SPLATS, default="auto",
                        help="BEV pooling of the runner (default auto: scatter on CUDA, cached indices on CPU)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="keep the conv weights contiguous (the runner's default is channels-last)")
    parser.add_argument("--compile", choices=("default", "reduce-overhead", "max-autotune"), default=None,
                        help="torch.compile the static-shape stages with this mode after the FLOP count "
                             "(reduce-overhead: CUDA graphs); the first warm-up step compiles")
    parser.add_argument("--threads", type=_positive, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--backend", type=_backends, default=["torch"], metavar="NAME[,NAME]",
                        help="runtimes to compare with torch, interleaved A/B (gsdocc_ros.deploy.bench_backends): "
                             f"{', '.join(BACKENDS)} (default torch: the stage-by-stage bench)")
    parser.add_argument("--graph-dir", type=Path, default=None, metavar="DIR",
                        help="`gsdocc export` folder the graph backends run (same --input-size and weights)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc bench``: check the arguments, measure, print the table and write the JSON."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ToolError("--device cuda: CUDA is not available in this torch build or on this machine")
    if args.precision == "fp16" and args.device != "cuda":
        raise ToolError("--precision fp16 needs --device cuda; use fp32 or bf16 on CPU")
    if args.compile is not None and args.warmup < 1:
        raise ToolError("--compile needs --warmup >= 1: the first compiled step compiles and must not be timed")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise ToolError(f"--checkpoint: no such file: {args.checkpoint}")
    if not (args.scene / "calib.json").is_file():
        raise ToolError(f"--scene: {args.scene} has no calib.json (expected a nuscenes_sample scene folder)")
    if str(args.labels) == "predicted":
        args.labels = None
    elif not args.labels.is_file():
        raise ToolError(f"--labels: no such file: {args.labels} (pass 'predicted' to use the model's output)")
    height, width = args.input_size
    out = args.json or Path("out") / f"bench-{args.device}-{args.precision}-{height}x{width}.json"
    if out.exists() and not args.force:
        raise ToolError(f"{out} exists; pass --force to overwrite it")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.backend != ["torch"]:
        if args.graph_dir is None:
            raise ToolError("--backend other than torch needs --graph-dir (a `gsdocc export` folder)")
        try:
            result = compare_backends(args)
        except ValueError as error:
            raise ToolError(str(error)) from None
        print(format_backends(result))
    else:
        result = bench(args)
        print(format_table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0
