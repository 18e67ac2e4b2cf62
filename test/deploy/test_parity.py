"""Every runtime gives the torch path's logits and labels over real four-step sequences with known ego motion.

Both runners take the same decisions (start, commits, a fractional age of 0.4 steps, ego motion from the poses):
the torch runner's logits are read from the occupancy head, the graph runner's from the graph's ``logits``
output. fp32 tolerance: logits within 1e-4, labels at least 99.99 % equal. The seeded random weights are
calibrated (deploy_data.calibrate) so that the logits spread like a trained model's and depend on the history.
CUDA runtimes are skipped only where no CUDA device exists.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
RUNTIMES = [("onnxruntime", "cpu"), ("openvino", "cpu"),
            pytest.param("onnxruntime", "cuda", marks=NO_CUDA),
            pytest.param("onnxruntime-tensorrt", "cuda", marks=NO_CUDA),
            pytest.param("tensorrt", "cuda", marks=NO_CUDA)]
LOGITS_ATOL = 1e-4
LABELS_EQUAL = 0.9999


def run_sequence(runner: OccupancyRunner, steps) -> list[dict]:
    """Each step's decisions, labels and logits ([1,18,Y,X,Z] float32 numpy)."""
    captured: list[np.ndarray] = []
    hook = runner.model.occupancy_head.register_forward_hook(
        lambda module, args, out: captured.append(out.float().cpu().numpy()))
    try:
        records = []
        for step in steps:
            result = runner.step(step.frames, step.ego2global, step.stamp_ns)
            logits = captured.pop() if runner.graph is None else runner.graph.last_outputs["logits"]
            state = runner.cache.state()
            records.append({"start": result.start_of_sequence, "committed": result.committed,
                            "elapsed": result.elapsed_steps, "labels": result.grid.labels, "logits": logits,
                            "history": state["bev"].float().numpy().copy(), "ages": state["ages"].numpy().copy()})
    finally:
        hook.remove()
    return records


@pytest.fixture(scope="session")
def torch_records(reduced_model, scene_sequence) -> list[dict]:
    runner = OccupancyRunner(reduced_model, RunnerConfig(cadence="every_frame"))
    return run_sequence(runner, scene_sequence)


@pytest.mark.parametrize(("backend", "device"), RUNTIMES)
def test_backend_matches_torch_over_a_sequence(backend, device, reduced_model, reduced_export, scene_sequence,
                                               torch_records) -> None:
    runner = OccupancyRunner(reduced_model, RunnerConfig(device=device, cadence="every_frame", backend=backend,
                                                         graph_dir=str(reduced_export)))
    records = run_sequence(runner, scene_sequence)
    decisions = [(r["start"], r["committed"], round(r["elapsed"], 6)) for r in torch_records]
    assert decisions == [(True, True, 1.0), (False, True, 1.0), (False, False, 0.4), (False, True, 1.0)]
    assert [(r["start"], r["committed"], round(r["elapsed"], 6)) for r in records] == decisions
    for k, (ours, reference) in enumerate(zip(records, torch_records)):
        assert np.abs(ours["logits"] - reference["logits"]).max() < LOGITS_ATOL, f"step {k}"
        assert (ours["labels"] == reference["labels"]).mean() >= LABELS_EQUAL, f"step {k}"
        assert np.abs(ours["history"] - reference["history"]).max() < LOGITS_ATOL, f"cache after step {k}"
        np.testing.assert_array_equal(ours["ages"], reference["ages"])


def test_history_changes_the_output(torch_records) -> None:
    """The sequence exercises the history: step 3 without it would differ (so parity there is not trivial)."""
    first, last = torch_records[0]["logits"], torch_records[3]["logits"]
    assert last.std() > 0.5  # logits of a realistic spread, far above the tolerance
    assert np.abs(first - last).max() > 100 * LOGITS_ATOL
    assert len(np.unique(last.argmax(axis=1))) >= 4  # the labels compared are not all one class
