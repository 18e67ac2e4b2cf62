"""The plain-text report of a bench result: what a user reads after `gsdocc bench` (the JSON holds every run)."""

from __future__ import annotations

from typing import Any


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
    return "\n".join(lines)
