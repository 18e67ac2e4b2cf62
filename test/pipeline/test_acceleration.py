"""Channels-last conversion: same parameters and, up to float reordering, the same network output."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from gsdocc_ros.model.config import GridGeometry, GridConfig, ImageConfig, ModelConfig, OccupancyConfig
from gsdocc_ros.model.gsdocc import GSDOCC, logits_to_labels
from gsdocc_ros.model.temporal import TemporalCache
from gsdocc_ros.pipeline.acceleration import compile_static_stages, is_channels_last, to_channels_last
from gsdocc_ros.pipeline.frames import load_sample_frames
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig

SMALL = ModelConfig(grid=GridConfig(x=(-8.0, 8.0, 0.8), y=(-8.0, 8.0, 0.8)), image=ImageConfig((64, 176)),
                    occupancy=OccupancyConfig(GridGeometry(origin=(-8.0, -8.0, -1.0), size=(40, 40, 16))))
"""The official network on a 20x20x8 lifting grid and 64x176 images: every layer, a fraction of the time."""


def test_parameters_keep_their_values() -> None:
    """Every 4-D/5-D weight becomes channels-last with unchanged values; 1-D parameters are untouched."""
    model = GSDOCC(SMALL)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    assert not is_channels_last(model)
    assert to_channels_last(model) is model
    assert is_channels_last(model)
    conv3d = model.occupancy_head.occ_pred_conv[0].weight
    assert conv3d.dim() == 5 and conv3d.is_contiguous(memory_format=torch.channels_last_3d)
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_same_output_as_contiguous(shared_data: Path) -> None:
    """Real images through the network both ways: logits within float32 reordering noise, same labels."""
    torch.manual_seed(0)
    model = GSDOCC(SMALL)
    model.reparameterize()
    frames = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c").frames
    inputs = OccupancyRunner(model, RunnerConfig(channels_last=False)).prepare_inputs(frames)
    fast = to_channels_last(copy.deepcopy(model))
    motion = torch.eye(4, dtype=torch.float64)[None]
    with torch.inference_mode():
        expected = model(inputs, TemporalCache(15, SMALL.grid), motion, start_of_sequence=True)
        logits = fast(inputs, TemporalCache(15, SMALL.grid), motion, start_of_sequence=True)
    assert logits.shape == expected.shape == (1, 18, 40, 40, 16)
    assert logits.is_contiguous(memory_format=torch.channels_last_3d)
    assert ((logits - expected).norm() / expected.norm()) < 1e-5
    assert torch.equal(logits_to_labels(logits)[0], logits_to_labels(expected)[0])


def test_runner_applies_it_by_default() -> None:
    """RunnerConfig.channels_last (default True) converts the runner's model; False leaves it contiguous."""
    assert is_channels_last(OccupancyRunner(GSDOCC(SMALL)).model)
    assert not is_channels_last(OccupancyRunner(GSDOCC(SMALL), RunnerConfig(channels_last=False)).model)


def test_compiled_stage_traces_and_matches(shared_data: Path) -> None:
    """A static stage goes through torch.compile's tracer (eager backend: no code generation, and only the BEV
    encoder, to stay fast) and the network output is unchanged; other stages stay plain methods."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = GSDOCC(SMALL)
    model.reparameterize()
    frames = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0003_fd842039").frames
    inputs = OccupancyRunner(model, RunnerConfig()).prepare_inputs(frames)
    compiled = compile_static_stages(copy.deepcopy(model), backend="eager", stages=("encode_bev",))
    assert "encode_bev" in vars(compiled) and "head" not in vars(compiled)
    motion = torch.eye(4, dtype=torch.float64)[None]
    with torch.inference_mode():
        expected = model(inputs, TemporalCache(15, SMALL.grid), motion, start_of_sequence=True)
        logits = compiled(inputs, TemporalCache(15, SMALL.grid), motion, start_of_sequence=True)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lift"):
        compile_static_stages(model, stages=("lift",))
