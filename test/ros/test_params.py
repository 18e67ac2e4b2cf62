"""The parameter table, config/gsdocc.yaml and the README agree; bad values are refused by name."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from gsdocc_ros.pipeline.runner_config import RunnerConfig
from gsdocc_ros.ros.params import (DEFAULTS, PARAMETERS, RUNNER_SETTINGS, NodeParams, describe, descriptor,
                                   markdown_table, validate)

REPO = Path(__file__).resolve().parents[2]


def _yaml_parameters() -> dict:
    return yaml.safe_load((REPO / "config" / "gsdocc.yaml").read_text())["/**"]["ros__parameters"]


def test_yaml_lists_every_parameter_with_its_default_and_description() -> None:
    values = _yaml_parameters()
    assert list(values) == list(PARAMETERS)
    text = (REPO / "config" / "gsdocc.yaml").read_text()
    for name, value in values.items():
        default = DEFAULTS[name]
        assert (tuple(value) if isinstance(default, tuple) else value) == default, name
        comment = " ".join(re.findall(rf"((?:    # .*\n)+)    {name}:", text)[0].replace("    # ", "").split())
        assert comment == describe(name), name


def test_readme_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme
    rows = dict(re.findall(r"^\| `(\w+)` \| [\w\[\]]+ \| .*? \| (.*) \|$", readme, flags=re.M))
    assert set(PARAMETERS) <= set(rows)
    for name in PARAMETERS:
        assert rows[name].endswith(describe(name)), name


def test_every_parameter_has_a_description() -> None:
    assert all(describe(f.name) for f in fields(NodeParams))


def test_inference_settings_are_the_runners_own_declarations() -> None:
    """No copies: the runner-fed parameters take RunnerConfig's limits and descriptions (device: its own default)."""
    runner = {f.name: f for f in fields(RunnerConfig)}
    for name in RUNNER_SETTINGS:
        assert PARAMETERS[name].description == runner[name].metadata["limits"].description, name
        assert PARAMETERS[name].choices == runner[name].metadata["limits"].choices, name
        assert DEFAULTS[name] == (runner[name].default if name != "device" else "cuda"), name
    params = validate({"allow_random_weights": True, "cadence": "every_frame", "max_gap_s": 3.0})
    assert params.runner_config() == RunnerConfig(device="cuda", cadence="every_frame", max_gap_s=3.0)


def test_descriptors_carry_ranges_and_choices() -> None:
    slop = descriptor("sync_slop_s")
    assert slop.read_only and slop.description == describe("sync_slop_s")
    assert slop.floating_point_range[0].from_value == 0.0 and not slop.integer_range
    width = descriptor("input_width").integer_range[0]
    assert (width.from_value, width.step) == (32, 32) and width.to_value % 32 == 0
    assert descriptor("sync_queue_size").integer_range[0].from_value == 1
    assert descriptor("cadence").additional_constraints == "one of keyframe, every_frame"
    assert descriptor("device").additional_constraints == "cpu, cuda or cuda:N"


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("cameras", ["CAM_FRONT"] * 6, "distinct"),
    ("cameras", [], "at least one camera"),
    ("image_types", ["compressed"] * 5, "one entry per camera"),
    ("image_fit", "stretch", "must be one of"),
    ("camera_timeout_s", 0.0, "positive finite"),
    ("image_types", ["jpeg"] * 6, "'compressed' or 'raw'"),
    ("device", "tpu", "cpu, cuda or cuda:N"),
    ("precision", "int8", "must be one of"),
    ("backend", "tflite", "must be one of"),
    ("cadence", "sometimes", "must be one of"),
    ("sync_slop_s", -0.1, "positive"),
    ("max_gap_s", float("nan"), "positive finite"),
    ("input_width", 700, "multiple of 32"),
    ("marker_hidden_classes", ["road"], "unknown class"),
    ("checkpoint", "/nonexistent/gsdocc.pth", "does not exist"),
    ("fixed_frame", "/map", "leading '/'"),
    ("key_camera", "CAM_TOP", "one of 'cameras'"),
    ("device", "cuda:one", "cpu, cuda or cuda:N"),
    ("sync_queue_size", 0, "integer >= 1"),
    ("marker_max_voxels", -5, "integer >= 1"),
    ("tf_wait_s", float("inf"), "positive finite"),
    ("history_step_s", 0.0, "positive finite"),
    ("diagnostics_period_s", -1.0, "positive finite"),
    ("cadence_tolerance_s", 0.25, "below half of history_step_s"),
    ("input_height", 0, "multiple of 32"),
    ("ego_frame", "", "non-empty"),
    ("image_topic_format", "/camera/image", "must contain {camera}"),
    ("checkpoint", "/dev/zero", "not a regular file"),  # a device, never read
    ("checkpoint", str(REPO), "is a directory"),  # a folder
    ("checkpoint", str(REPO / "README.md"), "neither a zip archive nor a pickle"),
    # topic patterns are never str.format-ed: attribute and conversion fields would be evaluated
    *[(name, value, "only the {camera} placeholder")
      for name, value in (("image_topic_format", "/{0}/image"), ("image_topic_format", "/{cam}/image"),
                          ("image_topic_format", "/{camera}/{camera.__class__.__name__}"),
                          ("camera_info_topic_format", "/{camera!r}/info"))],
])
def test_bad_values_are_refused_naming_the_parameter(name: str, value, fragment: str) -> None:
    with pytest.raises(ValueError) as error:
        validate({"allow_random_weights": True, name: value})
    assert f"parameter '{name}'" in str(error.value) and fragment in str(error.value)


def test_missing_checkpoint_needs_explicit_random_weights() -> None:
    with pytest.raises(ValueError, match="parameter 'checkpoint'.*allow_random_weights"):
        validate({})
    assert validate({"allow_random_weights": True}).checkpoint == ""


def test_checkpoint_path_is_resolved(tmp_path: Path) -> None:
    ckpt = tmp_path / "weights.pth"
    ckpt.write_bytes(b"\x80\x02")  # a pickle's first bytes: judged, not loaded, at validation
    assert validate({"checkpoint": str(ckpt)}).checkpoint == str(ckpt.resolve())


def test_any_rig_of_one_or_more_cameras_with_one_image_type_for_all() -> None:
    cameras = ["front_camera", "left_camera", "right_camera", "rear_left_camera", "rear_right_camera"]
    params = validate({"allow_random_weights": True, "cameras": cameras, "key_camera": "front_camera",
                       "image_types": ["raw"], "image_fit": "intrinsics"})
    assert params.cameras == tuple(cameras) and params.image_types == ("raw",) * 5
    assert params.runner_config().image_fit == "intrinsics"
    assert validate({"allow_random_weights": True, "cameras": ["cam"], "key_camera": "cam",
                     "image_types": ["compressed"]}).cameras == ("cam",)
