"""`gsdocc bench` end to end at a small input: every reported key present and sane (no timing value asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gsdocc_ros.model.config import GridConfig, ImageConfig, ModelConfig, OccupancyConfig
from gsdocc_ros.model.gsdocc import GSDOCC
from gsdocc_ros.pipeline.grid import GridGeometry
from gsdocc_ros.pipeline.runner import OccupancyRunner
from gsdocc_ros.tools import bench
from gsdocc_ros.tools.cli import main

SMALL = ["--input-size", "128x352", "--runs", "1", "--warmup", "0", "--quiet"]
SMALL_MODEL = ModelConfig(grid=GridConfig(x=(-8.0, 8.0, 0.8), y=(-8.0, 8.0, 0.8)), image=ImageConfig((64, 176)),
                          occupancy=OccupancyConfig(GridGeometry(origin=(-8.0, -8.0, -1.0), size=(40, 40, 16))))
"""The official network on a 20x20x8 lifting grid and 64x176 images, for the fast FLOP-count test."""


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    """One bench run on the real sample at a small input, with the A/B pairs (about 40 s unloaded)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    scene = shared_data / "nuscenes_sample" / "scene-0061_ca9a282c"
    labels = shared_data / "occ3d_sample" / "labels.npz"
    assert main(["bench", *SMALL, "--ab-runs", "1", "--scene", str(scene), "--labels", str(labels),
                 "--json", str(out)]) == 0
    return json.loads(out.read_text())


def _positive_stats(stats: dict[str, Any], runs: int) -> None:
    assert len(stats["runs"]) == runs
    assert 0 <= stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]


def test_stage_times_and_rates(full: dict[str, Any]) -> None:
    """Every stage of the issue is timed; the step, FPS, overhead and FLOP rate are positive and consistent."""
    assert list(full["stages_ms"]) == list(bench.STAGES)
    for name, stats in full["stages_ms"].items():
        _positive_stats(stats, 1)
        if name != "grid":  # building the grid object is sub-millisecond
            assert stats["median"] > 0, name
    network = sum(full["stages_ms"][name]["median"] for name in bench.NETWORK_STAGES)
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
    assert set(full["targets"]) == {"node_overhead_at_most_5pct", "node_overhead_at_most_5pct_pipelined",
                                    "flop_rate_at_least_half_of_matmul", "no_growth_over_runs"}
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
    assert set(flops["per_stage"]) == set(bench.NETWORK_STAGES)
    assert all(value > 0 for value in flops["per_stage"].values())
    assert flops["per_stage"]["bev_pool"] < flops["splat_counted_as_dense"] / 10
    assert sum(flops["per_stage"].values()) <= flops["network"] < 1.01 * sum(flops["per_stage"].values())
    assert set(flops["per_stage_gflops_per_s"]) == set(bench.NETWORK_STAGES)


def test_flop_count_is_repeatable_on_the_predicted_grid(shared_data: Path) -> None:
    """Two counting steps of a small network count exactly the same FLOPs; output labels can be the prediction."""
    torch.manual_seed(0)
    model = GSDOCC(SMALL_MODEL)
    model.reparameterize()
    runner = OccupancyRunner(model)
    setup = bench.make_setup(runner, shared_data / "nuscenes_sample" / "scene-0003_fd842039", labels=None)
    assert setup.labels_source == "predicted" and setup.output_labels.shape == (40, 40, 16)
    clock = bench.StageClock(runner.device)
    with torch.inference_mode(), bench.instrumented(runner, clock):
        first = bench.count_flops(setup, clock, "simplejpeg")
        second = bench.count_flops(setup, clock, "simplejpeg")
    assert first["network"] == second["network"] > 0
    assert first["per_stage"] == second["per_stage"]
    assert set(clock.times) == set(bench.STAGES)
    assert "encode_images" not in model.__dict__  # the instrumentation is gone after the block


def test_ab_pairs(full: dict[str, Any]) -> None:
    """The four A/B pairs of the issue (plus preprocessing): ratios positive, outputs equal where they must be."""
    ab = full["ab"]
    assert set(ab) == {"reparam_block", "bev_pool_indices", "bev_pool_scatter", "decode_threads", "jpeg_decoder",
                       "markers", "preprocess"}
    for name, pair in ab.items():
        _positive_stats(pair["baseline_ms"], 1)
        _positive_stats(pair["optimised_ms"], 1)
        assert pair["speedup"] == pytest.approx(pair["baseline_ms"]["median"] / pair["optimised_ms"]["median"]), name
    assert ab["reparam_block"]["rel_diff"] < 1e-5  # merged block = training form up to float rounding
    assert ab["bev_pool_indices"]["outputs_equal"] is True  # the cached pattern is the recomputed one
    assert ab["bev_pool_scatter"]["max_abs_diff"] < 1e-4  # same sums in another order
    assert ab["bev_pool_scatter"]["used_by_the_runner"] == "indices"  # on CPU
    assert ab["markers"]["outputs_equal"] is True and ab["markers"]["drawn_voxels"] == 39092
    assert ab["jpeg_decoder"]["max_abs_diff"] == 0  # simplejpeg (accurate settings) decodes like Pillow
    assert 0 < ab["preprocess"]["max_abs_diff_levels"] <= 2


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
        main(["bench", "--input-size", "250x700"])
    assert "multiples of 32" in capsys.readouterr().err
