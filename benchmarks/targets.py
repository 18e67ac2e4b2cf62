"""The targets of the performance work, read off a `gsdocc bench` result: which apply to its device and
precision, the measured value of each, and whether it is met.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/targets.py out/bench-cpu-fp32-256x704.json

Targets: node overhead <= 5 % of the step (serial and as the node runs it, `pipelined`); on CPU the network at
>= half the measured matmul rate; on CUDA >= 20 FPS in fp32 and >= 40 FPS otherwise, peak allocated memory below
4,759 MB, no host-device synchronisation in a step but the result copy; no memory growth over the runs (live
tensor storage on CPU, allocated memory on CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The targets that apply to the result's device and precision, each with the measured value."""
    cuda = result["config"]["device"].startswith("cuda")
    pipelined = result["pipelined"]["node_overhead_fraction"]
    out: dict[str, Any] = {"node_overhead_at_most_5pct": {"value": result["node_overhead_fraction"],
                                                         "met": result["node_overhead_fraction"] <= 0.05},
                           "node_overhead_at_most_5pct_pipelined": {"value": pipelined, "met": pipelined <= 0.05}}
    memory = result["memory"]
    if not cuda:
        fraction = result["flop_rate"]["fraction"]
        out["flop_rate_at_least_half_of_matmul"] = {"value": fraction, "met": fraction >= 0.5}
        # live tensor storage, not RSS: glibc keeps or returns freed blocks by tens of MB between runs
        out["no_growth_over_runs"] = {"value_mb": memory["live_tensor_growth_mb"],
                                      "met": memory["live_tensor_growth_mb"] < 0.1}
        return out
    need = 20.0 if result["config"]["precision"] == "fp32" else 40.0
    out[f"fps_at_least_{need:.0f}"] = {"value": result["fps"], "met": result["fps"] >= need}
    peak = max(memory["peak_allocated_all_steps_mb"], memory["peak_allocated_mb"])
    out["peak_gpu_memory_below_4759_mb"] = {"value": peak, "met": peak < 4759}
    syncs = result["host_syncs"]
    waits = len(syncs["cuda_sync_warnings"])
    out["no_host_sync_but_the_result_copy"] = {"value": syncs["audited_count"] + waits,
                                               "met": syncs["audited_count"] == 0 and waits <= 1}
    out["no_growth_over_runs"] = {"value_mb": memory["allocated_growth_mb"],  # live tensors: a leak shows exactly
                                  "met": memory["allocated_growth_mb"] < 1.0}
    return out


def format_targets(found: dict[str, Any]) -> str:
    """One line: each target, met or not."""
    return "targets: " + "; ".join(f"{name} {'met' if item['met'] else 'NOT met'}" for name, item in found.items())


def main(argv: list[str] | None = None) -> int:
    """Print the targets of a bench JSON; exit 1 when one is not met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="JSON written by `gsdocc bench --json`")
    args = parser.parse_args(argv)
    if not args.result.is_file():
        parser.error(f"no such file: {args.result}")
    found = targets(json.loads(args.result.read_text()))
    print(format_targets(found))
    return 0 if all(item["met"] for item in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
