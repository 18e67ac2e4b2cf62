"""The GPU configuration of the runner never makes the host wait: audited on the real sample, on any device.

``HostSyncAudit`` records the operations that read data back from the device; the runner with the settings
``auto`` picks on CUDA (scatter splat, on-device preprocessing) must run whole steps without one, while the
CPU-only index building is caught, which shows the audit sees inside the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_runner import SMALL  # the small grid of the runner tests

from gsdocc_ros.pipeline.frames import load_sample_frames
from gsdocc_ros.pipeline.host_sync import HostSyncAudit, cuda_sync_warnings
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model

HALF_SECOND_NS = 500_000_000


@pytest.fixture(scope="module")
def sample(shared_data: Path):
    return load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c")


def audited_steps(runner: OccupancyRunner, sample, count: int) -> list[dict[str, int]]:
    """Run ``count`` history steps of the sample, each under its own audit; the report of each."""
    reports = []
    for i in range(count):
        with HostSyncAudit() as audit:
            assert runner.step(sample.frames, sample.key_ego2global, sample.stamp_ns + i * HALF_SECOND_NS)
        reports.append(audit.report())
    return reports


def test_audit_catches_each_kind_of_sync() -> None:
    x = torch.tensor([0.0, 2.0, 0.0, 3.0])
    with HostSyncAudit() as audit:
        float(x.sum())
        x.nonzero()
        torch.unique(x)
        x[x > 1]  # boolean mask index
        torch.inverse(torch.eye(3))
        torch.linalg.inv_ex(torch.eye(3))  # unchecked: no sync
        x * 2  # elementwise: no sync
    ops = {op for op, _ in audit.found}
    assert ops == {"_local_scalar_dense", "nonzero", "_unique2", "index", "_linalg_check_errors"}
    assert sum(audit.found.values()) == 5  # one each; the unchecked inverse and the product are not syncs


def test_gpu_configuration_steps_without_host_sync(sample) -> None:
    model = load_model(None, SMALL, allow_random_weights=True)[0]
    runner = OccupancyRunner(model, RunnerConfig(splat="scatter", preprocess="torch"))
    # the first step (start of a sequence, nothing cached yet) and two steps on from it
    assert audited_steps(runner, sample, 3) == [{}, {}, {}]


def test_index_splat_syncs_where_the_audit_says(sample) -> None:
    model = load_model(None, SMALL, allow_random_weights=True)[0]
    runner = OccupancyRunner(model, RunnerConfig(splat="indices", preprocess="pillow"))
    first, second = audited_steps(runner, sample, 2)
    assert {key.split(" at ")[0] for key in first} == {"nonzero", "_unique2", "bincount"}  # building the indices
    assert all(key.split(" at ")[1].startswith("gsdocc_ros/model/view_transform.py:") for key in first)
    assert second == {"equal at " + next(iter(second)).split(" at ")[1]: 9}  # the cache compares 9 tensors


def test_scatter_and_index_splats_give_the_same_grid(sample) -> None:
    model = load_model(None, SMALL, allow_random_weights=True)[0]
    grids, lifted = [], []  # random weights make labels nearly input-blind: the lifted voxels are compared too
    for splat in ("scatter", "indices"):
        runner = OccupancyRunner(model, RunnerConfig(splat=splat))
        assert runner.model.forward_projection.splat == splat
        hook = runner.model.forward_projection.register_forward_hook(
            lambda module, args, out: lifted.append(out.clone()))
        grids.append(runner.step(sample.frames, sample.key_ego2global, sample.stamp_ns).grid)
        hook.remove()
    assert lifted[0].count_nonzero() > lifted[0].numel() / 10  # the real images lift into the small grid
    torch.testing.assert_close(lifted[0], lifted[1], rtol=1e-5, atol=1e-5)
    assert np.mean(grids[0].labels == grids[1].labels) > 0.9999
    assert np.abs(grids[0].confidence.astype(int) - grids[1].confidence).max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_waits_once_for_the_result(sample) -> None:
    model = load_model(None, SMALL, allow_random_weights=True)[0]
    runner = OccupancyRunner(model, RunnerConfig(device="cuda"))
    for i in range(2):  # the first step allocates and autotunes
        runner.step(sample.frames, sample.key_ego2global, sample.stamp_ns + i * HALF_SECOND_NS)
    caught = cuda_sync_warnings(lambda: runner.step(sample.frames, sample.key_ego2global,
                                                    sample.stamp_ns + 2 * HALF_SECOND_NS))
    assert len(caught) == 1, caught  # the one copy of the result to the host
