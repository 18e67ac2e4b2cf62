"""Wall and CPU time of one call or of the named stages of a run; each stage is also named in a profiler trace."""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.profiler import record_function


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
    ``sync``. On a shared CPU, CPU time counts the work done, wall time also the waiting for other processes.
    Each stage is a ``record_function`` range, so a torch.profiler trace of a run shows the same stage names."""

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
        with record_function(name):
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
