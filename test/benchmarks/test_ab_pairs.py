"""benchmarks/ab_pairs.py at a small input: every pair timed, outputs equal where they must be (no timing value
asserted)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory, shared_data: Path,
       benchmark_script: Callable[[str], ModuleType]) -> dict[str, Any]:
    """One run of the script on the real sample at a small input, one timed call per variant; its pairs."""
    out = tmp_path_factory.mktemp("ab") / "ab.json"
    scene = shared_data / "nuscenes_sample" / "scene-0061_ca9a282c"
    labels = shared_data / "occ3d_sample" / "labels.npz"
    assert benchmark_script("ab_pairs").main(["--input-size", "128x352", "--runs", "1", "--scene", str(scene),
                                              "--labels", str(labels), "--json", str(out)]) == 0
    return json.loads(out.read_text())["ab"]


def _positive_stats(stats: dict[str, Any], runs: int) -> None:
    assert len(stats["runs"]) == runs
    assert 0 <= stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]


def test_ab_pairs(ab: dict[str, Any]) -> None:
    """The four A/B pairs of the issue (plus preprocessing): ratios positive, outputs equal where they must be."""
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
