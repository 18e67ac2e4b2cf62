"""Checkpoint loading: official layouts and prefixes, strict reports, pickle refusal, own-format round trip."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gsdocc_ros.model.checkpoint import (FORMAT_TAG, Checkpoint, CheckpointError, build_model, check_checkpoint,
                                         config_from_dict, config_to_dict, load_checkpoint, read_checkpoint,
                                         save_checkpoint)
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.gsdocc import GSDOCC


class RunsCodeOnLoad:
    """Unpickling this calls os.system, which touches ``marker``: what a malicious checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture(scope="module")
def model() -> GSDOCC:
    return GSDOCC()


def _official_payload(layout: str, state: dict[str, torch.Tensor]) -> dict:
    """The official file layouts: mmcv runner (with numpy values in meta, as mmcv writes) or the EMA hook's."""
    if layout == "mmcv":
        meta = {"env_info": "sys.platform: linux", "config": "model = dict(type='GSDOCC')", "seed": np.int64(0),
                "exp_name": "gsdocc_r50_256x704_16f_8x4_24.py", "mmcv_version": "1.5.2", "epoch": 24,
                "iter": 21096, "CLASSES": ("others", "barrier"), "time": "Thu Dec 12 10:00:00 2024",
                "hook_msgs": {"last_ckpt": "work_dirs/iter_21096.pth", "best_score": np.float64(0.3893),
                              "ages": np.arange(3, dtype=np.float32)}}
        optimizer = {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3)}},
                     "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 0.01, "params": [0]}]}
        return {"meta": meta, "state_dict": collections.OrderedDict(state), "optimizer": optimizer}
    if layout == "ema":
        return {"iter": 21096, "state_dict": state, "updates": 21096}
    return dict(state)


@pytest.mark.parametrize("layout", ["mmcv", "ema", "plain"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_layouts_load_strictly(layout, prefix, synthetic_state, model, tmp_path) -> None:
    state = {prefix + k: v for k, v in synthetic_state.items()}
    path = tmp_path / "official.pth"
    torch.save(_official_payload(layout, state), path)
    report = load_checkpoint(model, path)
    assert report.ok and report.layout == layout and report.form == "training"
    assert report.prefix_stripped == (prefix or None)
    assert report.num_keys == 629
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v.to(loaded[k].dtype)) for k, v in synthetic_state.items())


def test_teacher_prefix_is_stripped(synthetic_state, tmp_path) -> None:
    path = tmp_path / "teacher.pth"
    torch.save({"state_dict": {"teacher." + k: v for k, v in synthetic_state.items()}}, path)
    assert read_checkpoint(path).prefix_stripped == "teacher."
    assert check_checkpoint(path).ok


def _broken(synthetic_state: dict[str, torch.Tensor], problem: str) -> tuple[dict[str, torch.Tensor], str]:
    """A copy of the state with one defect; also returns the key it concerns."""
    state = dict(synthetic_state)
    if problem == "missing":
        key = "depth_net.depth_conv.3.aspp2.bn.running_var"
        del state[key]
    elif problem == "unexpected":
        key = "occupancy_head.extra_branch.weight"
        state[key] = torch.zeros(3)
    else:
        key = "img_neck.fpn_convs.0.conv.weight"
        state[key] = torch.zeros(512, 512, 1, 1)
    return state, key


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape"])
def test_defective_checkpoint_fails_naming_the_key(problem, synthetic_state, model) -> None:
    state, key = _broken(synthetic_state, problem)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(model, Checkpoint(Path("broken.pth"), state, "plain"))
    message = str(caught.value)
    assert key in message and "does NOT match" in message
    if problem == "shape":
        assert "model [512, 512, 3, 3], file [512, 512, 1, 1]" in message


def test_code_running_pickle_is_refused_unless_trusted(synthetic_state, tmp_path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "malicious.pth"
    torch.save({"meta": {"note": RunsCodeOnLoad(marker)}, "state_dict": synthetic_state}, path)
    with pytest.raises(CheckpointError, match=r"refused to unpickle .*system.*--trust-pickle"):
        read_checkpoint(path)
    assert not marker.exists()
    report = check_checkpoint(path, trust_pickle=True)
    assert marker.exists() and report.ok


@pytest.mark.parametrize("content, expected", [
    (b"", "garbage.pth is empty (0 bytes); give the .pth file"),
    (b"not a checkpoint at all", "garbage.pth is not a torch checkpoint: neither a zip archive nor a pickle (23 bytes, "
                                 "starting b'not a checkpoint'); give the .pth file"),
    (b"\x80\x02\xb4 bytes after a pickle header", "garbage.pth: not a torch checkpoint, its pickle data is damaged "
                                                 "(Unsupported operand 180)"),
])
def test_unreadable_file_is_reported_by_name(content: bytes, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert expected in str(caught.value) and "trust" not in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match="absent.pth does not exist; check the path"):
        read_checkpoint(tmp_path / "absent.pth")


def test_truncated_legacy_file_says_it_ends_early(tmp_path: Path) -> None:
    """A pre-zip torch.save file cut short: its pickle header is intact, its data ends early; no trust hint."""
    whole = tmp_path / "whole.pth"
    torch.save({"a": torch.zeros(3)}, whole, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:40])
    for trust in (False, True):
        with pytest.raises(CheckpointError, match="cut.pth: .*(ends early|truncated)") as caught:
            read_checkpoint(cut, trust_pickle=trust)
        assert "trust" not in str(caught.value)
    assert read_checkpoint(whole).state_dict["a"].shape == (3,)


def test_own_format_round_trip(synthetic_state, tmp_path) -> None:
    cfg = ModelConfig.for_input_size(512, 1408)
    path = tmp_path / "own.pt"
    save_checkpoint(path, synthetic_state, cfg)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT_TAG
    assert [p.name for p in tmp_path.iterdir()] == ["own.pt"]
    rebuilt = build_model(path, reparameterize=False)
    assert rebuilt.cfg == cfg
    assert read_checkpoint(path).layout == "gsdocc_ros"
    state = rebuilt.state_dict()
    assert list(state) == list(synthetic_state)
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in synthetic_state.items())


def test_deploy_form_loads_into_a_fresh_model(tmp_path) -> None:
    torch.manual_seed(1)
    source = GSDOCC()
    source.reparameterize()
    path = tmp_path / "deploy.pt"
    save_checkpoint(path, source.state_dict(), source.cfg)
    assert check_checkpoint(path).form == "deploy"
    target = build_model(path)
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))
    assert list(target.state_dict()) == list(source.state_dict())


def test_config_dict_round_trip_and_unknown_field() -> None:
    cfg = ModelConfig.for_input_size(512, 1408)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(CheckpointError, match="unknown field.*warp_speed"):
        config_from_dict({"warp_speed": 9})
