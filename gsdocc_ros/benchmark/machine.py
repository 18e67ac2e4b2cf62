"""The machine a bench ran on: CPU and GPU, process memory, live tensor storage, and its matrix-product rate."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import resource
import statistics
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Timer

from gsdocc_ros.benchmark.timing import cpu_ms, synchronize
from gsdocc_ros.pipeline.runner import PRECISIONS


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
    """Achieved FLOP rate of a size x size matrix product on ``device`` in ``dtype``: the median of ``runs`` timings
    of one call each (torch.utils.benchmark, on the process's torch threads, the device synchronised around each
    call), and the process CPU time per call over ``runs`` calls."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    out = torch.empty(size, size, device=device, dtype=dtype)

    def cpu_clock() -> float:
        synchronize(device)
        return cpu_ms() / 1e3

    product, tensors = "torch.mm(a, b, out=out)", {"a": a, "b": b, "out": out}
    threads = torch.get_num_threads()  # Timer's default of one thread is not the rate the network sees
    wall = Timer(product, globals=tensors, num_threads=threads)  # Timer's clock synchronises the accelerator
    cpu = Timer(product, globals=tensors, num_threads=threads, timer=cpu_clock)
    median = statistics.median(wall.timeit(number=1).median for _ in range(runs)) * 1e3
    cpu_per_run = cpu.timeit(number=runs).median * 1e3
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
