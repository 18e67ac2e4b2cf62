"""The runner's temporal decisions: history cadence, resets and the ego motion it hands the model.

A small grid (16 m square, 64x176 input) keeps each real forward cheap; the decisions do not depend on size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gsdocc_ros.model.checkpoint_file import CheckpointError
from gsdocc_ros.model.config import GridConfig, ImageConfig, ModelConfig, OccupancyConfig
from gsdocc_ros.pipeline.frames import load_sample_frames
from gsdocc_ros.pipeline.geometry import ego_motion
from gsdocc_ros.pipeline.grid import GridGeometry
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model, resolve_device

SMALL = ModelConfig(grid=GridConfig(x=(-8.0, 8.0, 0.8), y=(-8.0, 8.0, 0.8)), image=ImageConfig((64, 176)),
                    occupancy=OccupancyConfig(GridGeometry(origin=(-8.0, -8.0, -1.0), size=(40, 40, 16))))
SMALL_GEOMETRY = SMALL.occupancy.geometry
MS = 1_000_000


@pytest.fixture(scope="module")
def model():
    return load_model(None, SMALL, allow_random_weights=True)[0]


@pytest.fixture(scope="module")
def sample(shared_data: Path):
    return load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c")


def make_runner(model, **config) -> OccupancyRunner:
    return OccupancyRunner(model, RunnerConfig(**config))


def moved(pose: np.ndarray, dx: float) -> np.ndarray:
    out = pose.copy()
    out[:3, 3] += out[:3, :3] @ np.array([dx, 0.0, 0.0])
    return out


def test_keyframe_cadence_picks_every_sixth_set_at_12_hz(model, sample) -> None:
    runner = make_runner(model)
    period = 83_333_333  # 12 Hz
    inferred = [k for k in range(13) if runner.wants(sample.stamp_ns + k * period)
                and runner.step(sample.frames, sample.key_ego2global, sample.stamp_ns + k * period) is not None]
    assert inferred == [0, 6, 12]


def test_keyframe_replay_with_uneven_gaps_keeps_every_keyframe(model, sample) -> None:
    runner = make_runner(model)
    stamps = np.cumsum([0, 400, 600, 450, 550]) * MS + sample.stamp_ns  # nuScenes keyframe gaps
    results = [runner.step(sample.frames, sample.key_ego2global, int(t)) for t in stamps]
    assert all(r is not None and r.committed for r in results)
    assert [r.start_of_sequence for r in results] == [True, False, False, False, False]


def test_every_frame_pushes_history_only_at_half_second_steps(model, sample) -> None:
    runner = make_runner(model, cadence="every_frame")
    period = 100 * MS
    results = [runner.step(sample.frames, sample.key_ego2global, sample.stamp_ns + k * period) for k in range(7)]
    assert [r.committed for r in results] == [True, False, False, False, False, True, False]
    assert [round(r.elapsed_steps, 3) for r in results] == [1.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.2]
    assert runner.cache.state()["ages"].flatten().tolist()[:2] == [0.0, 1.0]


def test_ego_motion_is_relative_to_the_last_history_step(model, sample) -> None:
    runner = make_runner(model, cadence="every_frame")
    poses = [moved(sample.key_ego2global, 0.9 * k) for k in range(7)]
    results = [runner.step(sample.frames, poses[k], sample.stamp_ns + k * 100 * MS) for k in range(7)]
    np.testing.assert_allclose(results[0].curr_to_prev_ego, np.eye(4), atol=1e-9)
    for k in range(1, 6):  # steps 1..5 relative to step 0, the last push before step 5
        np.testing.assert_allclose(results[k].curr_to_prev_ego, ego_motion(poses[0], poses[k]), atol=1e-9)
        assert results[k].curr_to_prev_ego[0, 3] == pytest.approx(0.9 * k, abs=1e-6)
    np.testing.assert_allclose(results[6].curr_to_prev_ego, ego_motion(poses[5], poses[6]), atol=1e-9)


@pytest.mark.parametrize(("case", "expected"), [
    ("backwards", "time went backwards"), ("gap", "since the last history step"),
    ("jump", "ego moved"), ("sequence", "new sequence"), ("request", "asked"),
])
def test_resets(model, sample, case: str, expected: str) -> None:
    runner = make_runner(model)
    t0 = sample.stamp_ns
    first = runner.step(sample.frames, sample.key_ego2global, t0, sequence_id="a")
    assert first.start_of_sequence and first.reset_reason == "first frame"
    stamp, pose, seq = t0 + 500 * MS, sample.key_ego2global, "a"
    if case == "backwards":
        stamp = t0 - 60_000 * MS
    elif case == "gap":
        stamp = t0 + 5_000 * MS
    elif case == "jump":
        pose = moved(pose, 50.0)
    elif case == "sequence":
        seq = "b"
    else:
        runner.reset("asked by the test")
    result = runner.step(sample.frames, pose, stamp, sequence_id=seq)
    assert result.start_of_sequence and expected in result.reset_reason
    np.testing.assert_allclose(result.curr_to_prev_ego, np.eye(4), atol=1e-9)
    calm = runner.step(sample.frames, pose, stamp + 500 * MS, sequence_id=seq)
    assert not calm.start_of_sequence and calm.reset_reason is None


def test_decisions_beside_a_running_step(model, sample, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the node's prepare thread does while a step runs: a reset asked meanwhile holds for the next step,
    and stamps it judged ahead of the steps count once in the set rate."""
    runner = make_runner(model)
    t0 = sample.stamp_ns
    runner.step(sample.frames, sample.key_ego2global, t0)
    forward = type(model).forward

    def forward_with_a_visitor(self, *args, **kwargs):
        runner.reset("asked during a step")
        assert runner.wants(t0 + 1000 * MS)  # the next keyframe, judged while this step runs
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", forward_with_a_visitor)
    during = runner.step(sample.frames, sample.key_ego2global, t0 + 500 * MS)
    monkeypatch.undo()
    assert not during.start_of_sequence and during.committed  # the request came after its decision
    after = runner.step(sample.frames, sample.key_ego2global, t0 + 1000 * MS)
    assert after.start_of_sequence and after.reset_reason == "asked during a step"
    assert list(runner._set_intervals) == [500 * MS, 500 * MS]  # t0+1000 seen twice, counted once

    for stamp in (t0 + 1083 * MS, t0 + 1166 * MS):  # both judged before either step: the prepare thread ahead
        runner.wants(stamp)
    runner.step(sample.frames, sample.key_ego2global, t0 + 1083 * MS)
    runner.step(sample.frames, sample.key_ego2global, t0 + 1166 * MS)
    assert list(runner._set_intervals) == [500 * MS, 500 * MS, 83 * MS, 83 * MS]


def test_grid_and_camera_mask(model, sample) -> None:
    runner = make_runner(model, camera_mask=True)
    result = runner.step(sample.frames, sample.key_ego2global, sample.stamp_ns)
    grid = result.grid
    assert grid.labels.shape == (40, 40, 16) and grid.labels.dtype == np.uint8 and grid.labels.max() < 18
    assert grid.confidence.dtype == np.uint8 and grid.stamp_ns == sample.stamp_ns
    mask = grid.camera_mask
    # 6 m ahead at 1 m height is in CAM_FRONT's view; the ground under the ego (closer than 2 m) is not
    assert 0.1 < mask.mean() < 0.95
    assert mask[35, 20, 5] and mask[4, 20, 5]
    assert not mask[19:21, 19:21, 0].any()
    assert set(result.timings_ms) == {"preprocess", "network", "postprocess"}


def test_device_resolution() -> None:
    device, warning = resolve_device("cuda")
    import torch

    if torch.cuda.is_available():
        assert device.type == "cuda" and warning is None
    else:
        assert device.type == "cpu" and "CUDA is not available" in warning
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


def test_random_weights_need_explicit_consent() -> None:
    with pytest.raises(ValueError, match="no checkpoint"):
        load_model(None, SMALL)
    with pytest.raises(CheckpointError, match="checkpoint /nonexistent.pth does not exist"):
        load_model("/nonexistent.pth", SMALL)
    with pytest.raises(CheckpointError, match="is a directory"):  # the loader's own verdict, not "no such file"
        load_model(Path(__file__).parent, SMALL)
