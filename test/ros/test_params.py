"""The parameter table, config/gsdocc.yaml and the README agree; bad values are refused by name."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from gsdocc_ros.ros.params import PARAMETERS, NodeParams, describe, validate

REPO = Path(__file__).resolve().parents[2]


def _yaml_parameters() -> dict:
    return yaml.safe_load((REPO / "config" / "gsdocc.yaml").read_text())["/**"]["ros__parameters"]


def test_yaml_lists_every_parameter_with_its_default_and_description() -> None:
    values = _yaml_parameters()
    assert list(values) == list(PARAMETERS)
    defaults = NodeParams()
    text = (REPO / "config" / "gsdocc.yaml").read_text()
    for name, value in values.items():
        default = getattr(defaults, name)
        assert (tuple(value) if isinstance(default, tuple) else value) == default, name
        comment = " ".join(re.findall(rf"((?:    # .*\n)+)    {name}:", text)[0].replace("    # ", "").split())
        assert comment == describe(name), name


def test_readme_table_matches_the_parameters() -> None:
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| [\w\[\]]+ \| .*? \| (.*) \|$", readme, flags=re.M))
    assert set(rows) == set(PARAMETERS)
    for name in PARAMETERS:
        assert rows[name] == describe(name), name


def test_every_parameter_has_a_description() -> None:
    assert all(describe(f.name) for f in fields(NodeParams))


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("cameras", ["CAM_FRONT"] * 6, "distinct"),
    ("cameras", ["A", "B", "C"], "exactly 6"),
    ("image_types", ["compressed"] * 5, "one entry per camera"),
    ("image_types", ["jpeg"] * 6, "'compressed' or 'raw'"),
    ("device", "tpu", "cpu, cuda or cuda:N"),
    ("precision", "int8", "must be one of"),
    ("backend", "tflite", "must be one of"),
    ("cadence", "sometimes", "must be one of"),
    ("sync_slop_s", -0.1, "positive"),
    ("max_gap_s", float("nan"), "positive finite"),
    ("input_width", 700, "multiple of 32"),
    ("marker_hidden_classes", ["road"], "unknown class"),
    ("checkpoint", "/nonexistent/gsdocc.pth", "no such file"),
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
    ("checkpoint", "/dev/zero", "no such file"),  # a device, never read
    ("checkpoint", str(REPO), "no such file"),  # a folder
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
    ckpt.write_bytes(b"x")
    assert validate({"checkpoint": str(ckpt)}).checkpoint == str(ckpt.resolve())
