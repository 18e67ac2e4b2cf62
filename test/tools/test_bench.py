"""`gsdocc bench` end to end at a small input: every reported key present and sane (no timing value asserted);
the library's stage clock and FLOP count; the targets of benchmarks/targets.py read off the result."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from gsdocc_ros.benchmark.flops import count_flops
from gsdocc_ros.benchmark.step import NETWORK_STAGES, STAGES, captured_step, instrumented, make_setup
from gsdocc_ros.benchmark.timing import StageClock
from gsdocc_ros.model.config import GridConfig, ImageConfig, ModelConfig, OccupancyConfig
from gsdocc_ros.model.gsdocc import GSDOCC
from gsdocc_ros.pipeline.grid import GridGeometry
from gsdocc_ros.pipeline.runner import OccupancyRunner
from gsdocc_ros.tools.cli import main

SMALL = ["--input-size", "128x352", "--runs", "1", "--warmup", "0", "--quiet"]
SMALL_MODEL = ModelConfig(grid=GridConfig(x=(-8.0, 8.0, 0.8), y=(-8.0, 8.0, 0.8)), image=ImageConfig((64, 176)),
                          occupancy=OccupancyConfig(GridGeometry(origin=(-8.0, -8.0, -1.0), size=(40, 40, 16))))
"""The official network on a 20x20x8 lifting grid and 64x176 images, for the fast FLOP-count test."""


@pytest.fixture(scope="module")
def full_json(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """One bench run on the real sample at a small input (about 30 s unloaded); the JSON it wrote."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    scene = shared_data / "nuscenes_sample" / "scene-0061_ca9a282c"
    labels = shared_data / "occ3d_sample" / "labels.npz"
    assert main(["bench", *SMALL, "--scene", str(scene), "--labels", str(labels), "--json", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def full(full_json: Path) -> dict[str, Any]:
    """The result tree of that run."""
    return json.loads(full_json.read_text())


def _positive_stats(stats: dict[str, Any], runs: int) -> None:
    assert len(stats["runs"]) == runs
    assert 0 <= stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]


def test_stage_times_and_rates(full: dict[str, Any]) -> None:
    """Every stage of the issue is timed; the step, FPS, overhead and FLOP rate are positive and consistent."""
    assert list(full["stages_ms"]) == list(STAGES)
    for name, stats in full["stages_ms"].items():
        _positive_stats(stats, 1)
        if name != "grid":  # building the grid object is sub-millisecond
            assert stats["median"] > 0, name
    network = sum(full["stages_ms"][name]["median"] for name in NETWORK_STAGES)
    assert full["network_ms"]["median"] == pytest.approx(network)
    assert full["step_ms"]["median"] > network
    assert full["fps"] == pytest.approx(1e3 / full["step_ms"]["median"])
    assert 0 < full["node_overhead_fraction"] < 1
    rate = full["flop_rate"]
    assert rate["achieved_gflops"] > 0 and rate["matmul"]["gflops"] > 0 and rate["matmul"]["size"] == 2048
    assert rate["fraction"] == pytest.approx(rate["achieved_gflops"] / rate["matmul"]["gflops"])
    assert rate["fraction_of_cpu_time"] > 0 and rate["matmul"]["gflops_per_cpu_s"] > 0
    assert rate["fraction_best_run"] >= rate["fraction"]
    assert full["config"]["drawn_voxels"] == 39092  # the real Occ3D grid drives the message stages
    assert full["config"]["preprocess"] == "pillow" and full["config"]["channels_last"] is True
    assert full["config"]["compile"] is None and full["warmup_step_ms"] == []
    assert full["machine"]["nproc"] >= 1 and full["machine"]["cpu"]
    assert full["memory"]["peak_rss_mb"] > 500  # the network alone holds ~460 MB of weights
    assert full["memory"]["live_tensors_after_each_run_mb"][0] > 460  # the weights are found among live tensors
    assert "ab" not in full and "targets" not in full  # scripts of benchmarks/ now
    pipelined = full["pipelined"]
    _positive_stats(pipelined["period_ms"], 1)
    assert 0 < pipelined["node_overhead_fraction"] < 1  # a period holds one network run and more
    assert pipelined["fps"] == pytest.approx(1e3 / pipelined["period_ms"]["median"])
    assert "gsdocc bench --device cpu --precision fp32 --input-size 128x352" in full["command"]


def test_host_syncs_are_audited(full: dict[str, Any]) -> None:
    """On CPU the runner compares the cached calibration (9 tensors, free here): the audit names exactly that."""
    syncs = full["host_syncs"]
    assert full["config"]["splat"] == "indices" and syncs["audited_count"] == 9
    assert [where.split(" at ")[0] for where in syncs["audited_ops"]] == ["equal"]
    assert next(iter(syncs["audited_ops"])).split(" at ")[1].startswith("gsdocc_ros/model/view_transform.py:")
    assert "cuda_sync_warnings" not in syncs


def test_flops_are_counted(full: dict[str, Any]) -> None:
    """Per-stage FLOPs are positive and add up to the network total; the splat is charged as sparse."""
    flops = full["flops"]
    assert set(flops["per_stage"]) == set(NETWORK_STAGES)
    assert all(value > 0 for value in flops["per_stage"].values())
    assert flops["per_stage"]["bev_pool"] < flops["splat_counted_as_dense"] / 10
    assert sum(flops["per_stage"].values()) <= flops["network"] < 1.01 * sum(flops["per_stage"].values())
    assert set(flops["per_stage_gflops_per_s"]) == set(NETWORK_STAGES)


def test_flop_count_is_repeatable_on_the_predicted_grid(shared_data: Path) -> None:
    """Two counting steps of a small network count exactly the same FLOPs; output labels can be the prediction."""
    torch.manual_seed(0)
    model = GSDOCC(SMALL_MODEL)
    model.reparameterize()
    runner = OccupancyRunner(model)
    setup = make_setup(runner, shared_data / "nuscenes_sample" / "scene-0003_fd842039", labels=None)
    assert setup.labels_source == "predicted" and setup.output_labels.shape == (40, 40, 16)
    clock = StageClock(runner.device)
    with torch.inference_mode(), instrumented(runner, clock):
        first = count_flops(model, lambda: captured_step(setup, clock, "simplejpeg"))
        second = count_flops(model, lambda: captured_step(setup, clock, "simplejpeg"))
    assert first["network"] == second["network"] > 0
    assert first["per_stage"] == second["per_stage"]
    assert set(clock.times) == set(STAGES)
    assert "encode_images" not in model.__dict__  # the instrumentation is gone after the block


def test_targets(full: dict[str, Any], full_json: Path, benchmark_script: Callable[[str], ModuleType],
                 capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/targets.py names the CPU targets of the result and prints whether each is met."""
    script = benchmark_script("targets")
    found = script.targets(full)
    assert set(found) == {"node_overhead_at_most_5pct", "node_overhead_at_most_5pct_pipelined",
                          "flop_rate_at_least_half_of_matmul", "no_growth_over_runs"}
    assert found["flop_rate_at_least_half_of_matmul"]["value"] == full["flop_rate"]["fraction"]
    code = script.main([str(full_json)])
    assert code == (0 if all(item["met"] for item in found.values()) else 1)
    assert capsys.readouterr().out.strip() == script.format_targets(found)


def test_stages_are_named_in_a_profiler_trace() -> None:
    """Each stage of the clock is a record_function range, so a torch.profiler trace shows it by name."""
    clock = StageClock(torch.device("cpu"))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        with clock.stage("image_encoder"):
            torch.ones(64, 64) @ torch.ones(64, 64)
    assert "image_encoder" in {event.key for event in profile.key_averages()}
    assert clock.times["image_encoder"] > 0


def test_help_imports_neither_torch_rclpy_nor_matplotlib() -> None:
    """`gsdocc --help` and `gsdocc bench --help` build their parsers without the heavy imports."""
    probe = ("import sys, contextlib, io\n"
             "from gsdocc_ros.tools import cli\n"
             "for argv in (['--help'], ['bench', '--help']):\n"
             "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
             "        cli.main(argv)\n"
             "print(sorted(m for m in ('torch', 'rclpy', 'matplotlib') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_refuses_what_it_cannot_measure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fp16 on CPU, an existing output and a bad size are refused before any work, with one clear line."""
    assert main(["bench", "--precision", "fp16", "--json", str(tmp_path / "a.json")]) == 2
    assert "fp16 needs --device cuda" in capsys.readouterr().err
    (tmp_path / "b.json").write_text("{}")
    assert main(["bench", "--json", str(tmp_path / "b.json")]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["bench", "--compile", "default", "--warmup", "0", "--json", str(tmp_path / "c.json")]) == 2
    assert "--compile needs --warmup >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--ab-runs", "1"])  # the A/B pairs are benchmarks/ab_pairs.py now
    assert "unrecognized arguments: --ab-runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--input-size", "250x700"])
    assert "multiples of 32" in capsys.readouterr().err
