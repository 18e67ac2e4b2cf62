"""The node's parameters: one typed declaration each (type, default, range or choices, description).

NodeParams is the single source: the node declares every field as a ROS parameter with a ParameterDescriptor
built from it (``descriptor``), ``validate`` checks the values once (the inference settings by RunnerConfig, whose
own declarations they are), config/gsdocc.yaml and the README table (``markdown_table``) are kept equal to it by
test/ros/test_params.py, and ``runner_config`` fills the runner's settings.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidTopicNameException
from rclpy.validate_topic_name import validate_topic_name

from gsdocc_ros.model.checkpoint_file import CheckpointError, check_checkpoint_file
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA
from gsdocc_ros.pipeline.grid import CLASS_NAMES
from gsdocc_ros.pipeline.runner_config import RunnerConfig
from gsdocc_ros.pipeline.settings import Limits, SettingError, check_settings, setting

RUNNER_SETTINGS = ("device", "precision", "backend", "graph_dir", "image_fit", "cadence", "history_step_s",
                   "cadence_tolerance_s", "max_gap_s", "max_jump_m")
"""Parameters that are RunnerConfig fields of the same name: declared (limits, description) there, once."""


def runner_setting(name: str, default: Any = MISSING) -> Any:
    """A NodeParams field that is RunnerConfig's field ``name`` (its default unless ``default`` is given)."""
    runner_field = next(f for f in fields(RunnerConfig) if f.name == name)
    value = runner_field.default if default is MISSING else default
    limits = runner_field.metadata["limits"]
    return setting(value, limits.description, **{k: getattr(limits, k) for k in
                                                 ("choices", "pattern", "pattern_text", "positive", "note")})


TOPIC_NOTE = "a topic name holding {camera} and no other {...} field"
FRAME_ID = {"pattern": r"[^/].*", "pattern_text": "a non-empty frame id without a leading '/'"}


@dataclass(frozen=True)
class NodeParams:
    """Validated parameters of the occupancy node (names are the ROS parameter names)."""

    cameras: tuple[str, ...] = setting(CAMERA_NAMES, "Camera names in model order (any count; trained on the six "
                                       "nuScenes views); name topics and default frame_id.",
                                       note="one or more distinct names")
    image_topic_format: str = setting("/{camera}/image_rect_compressed", "Image topic of each camera; {camera} is "
                                      "replaced by the camera name.", note=TOPIC_NOTE)
    camera_info_topic_format: str = setting("/{camera}/camera_info", "CameraInfo topic of each camera; {camera} is "
                                            "replaced by the camera name.", note=TOPIC_NOTE)
    image_types: tuple[str, ...] = setting(("compressed",) * 6, "Per camera, or one for all: compressed "
                                           "(CompressedImage, jpeg/png) or raw (Image, encodings under Inputs).",
                                           note="compressed or raw, one per camera or one for all")
    key_camera: str = setting(KEY_CAMERA, "Camera whose stamp and ego pose define the output's stamp and frame.",
                              note="one of cameras")
    ego_frame: str = setting("base_link", "Ego frame (REP-105) of the output grid and of the extrinsics.", **FRAME_ID)
    fixed_frame: str = setting("map", "World-fixed frame (map or odom) through which ego poses at different stamps "
                               "are chained.", **FRAME_ID)
    sync_slop_s: float = setting(0.06, "Approximate-time window of one camera set; nuScenes sets span about 42 ms in "
                                 "an 83 ms period.", positive=True)
    sync_queue_size: int = setting(10, "Messages kept per camera while a set is assembled.", at_least=1)
    camera_timeout_s: float = setting(0.25, "Stamp lag (s) after which sets go on without a camera (degraded); at "
                                      "least three of its frame periods.", positive=True)
    tf_wait_s: float = setting(0.2, "How long the worker waits for tf to reach a set's stamps before counting a tf "
                               "failure.", positive=True)
    checkpoint: str = setting("", "Path of the GSD-OCC checkpoint (official .pth or our own format).",
                              note="an existing file, or empty with allow_random_weights")
    allow_random_weights: bool = setting(False, "Start without a checkpoint on seeded random weights (demos and tests "
                                         "only: the output is meaningless).")
    trust_pickle: bool = setting(False, "Allow a checkpoint that needs arbitrary unpickling (runs code from the file: "
                                 "only for files you trust).")
    device: str = runner_setting("device", "cuda")
    precision: str = runner_setting("precision")
    backend: str = runner_setting("backend")
    graph_dir: str = runner_setting("graph_dir")
    input_height: int = setting(256, "Network input height per camera (256 or 512 for the official configs).",
                                multiple_of=32)
    input_width: int = setting(704, "Network input width per camera (704 or 1408 for the official configs).",
                               multiple_of=32)
    image_fit: str = runner_setting("image_fit")
    cadence: str = runner_setting("cadence")
    history_step_s: float = runner_setting("history_step_s")
    cadence_tolerance_s: float = runner_setting("cadence_tolerance_s")
    max_gap_s: float = runner_setting("max_gap_s")
    max_jump_m: float = runner_setting("max_jump_m")
    publish_confidence: bool = setting(True, "Fill the grid's per-voxel confidence.")
    publish_camera_mask: bool = setting(False, "Fill the grid's camera-visibility mask (needed by "
                                        "marker_camera_visible_only).")
    marker_hidden_classes: tuple[str, ...] = setting((), "Class names never drawn as markers (e.g. "
                                                     "driveable_surface); free is never drawn.",
                                                     note="Occ3D class names")
    marker_camera_visible_only: bool = setting(False, "Draw only voxels inside some camera's view.")
    marker_max_voxels: int = setting(60000, "Cap on the number of drawn voxels (RViz2 slows down beyond a few tens "
                                     "of thousands of cubes).", at_least=1)
    marker_lifetime_s: float = setting(1.0, "Marker lifetime; keep it at least the output period so markers do not "
                                       "flicker.", positive=True)
    diagnostics_period_s: float = setting(1.0, "Period of the /diagnostics status.", positive=True)

    def __post_init__(self) -> None:
        check_settings(self, tuple(name for name in PARAMETERS if name not in RUNNER_SETTINGS))
        self.runner_config()  # the inference settings, checked by the runner's own declarations
        self._check_cameras()
        unknown = sorted(set(self.marker_hidden_classes) - set(CLASS_NAMES))
        if unknown:
            raise SettingError("marker_hidden_classes", f"unknown class name(s) {unknown}; known: "
                               f"{', '.join(CLASS_NAMES)}", self.marker_hidden_classes)
        if self.checkpoint:
            try:  # the same one-line verdict as `gsdocc checkpoint check`, before the node imports torch
                check_checkpoint_file(Path(self.checkpoint))
            except CheckpointError as error:
                raise SettingError("checkpoint", str(error), self.checkpoint) from None
        if not self.checkpoint and not self.allow_random_weights:
            raise SettingError("checkpoint", "no checkpoint given; set one, or allow_random_weights:=true for a demo "
                               "(the output is then meaningless)", self.checkpoint)

    def _check_cameras(self) -> None:
        """The camera list, its image types, the key camera and the topic patterns agree."""
        cams = self.cameras
        if not cams:
            raise SettingError("cameras", "at least one camera is needed", cams)
        if len(set(cams)) != len(cams) or not all(isinstance(c, str) and c for c in cams):
            raise SettingError("cameras", "names must be distinct, non-empty strings", cams)
        if len(self.image_types) != len(cams):
            raise SettingError("image_types", f"needs one entry per camera ({len(cams)}) or one for all",
                               self.image_types)
        if any(t not in ("compressed", "raw") for t in self.image_types):
            raise SettingError("image_types", "each entry must be 'compressed' or 'raw'", self.image_types)
        if self.key_camera not in cams:
            raise SettingError("key_camera", "must be one of 'cameras'", self.key_camera)
        for name in ("image_topic_format", "camera_info_topic_format"):
            pattern = getattr(self, name)
            rest = pattern.replace(CAMERA_PLACEHOLDER, "")
            if "{" in rest or "}" in rest:
                raise SettingError(name, "may hold only the {camera} placeholder, no other {...} field", pattern)
            if CAMERA_PLACEHOLDER not in pattern:
                raise SettingError(name, "must contain {camera} (each camera needs its own topic)", pattern)
            for camera in cams:
                try:
                    validate_topic_name(topic_for(pattern, camera))
                except InvalidTopicNameException as error:
                    raise SettingError(name, f"gives the invalid topic name {topic_for(pattern, camera)!r} for "
                                       f"{camera} ({str(error).splitlines()[0]})", pattern) from None

    def runner_config(self) -> RunnerConfig:
        """The inference settings of these parameters."""
        return RunnerConfig(**{name: getattr(self, name) for name in RUNNER_SETTINGS},
                            confidence=self.publish_confidence,
                            camera_mask=self.publish_camera_mask or self.marker_camera_visible_only)

    def topics(self) -> list[tuple[str, str, str]]:
        """(camera, image topic, camera-info topic) per camera, in model order."""
        return [(cam, topic_for(self.image_topic_format, cam), topic_for(self.camera_info_topic_format, cam))
                for cam in self.cameras]


CAMERA_PLACEHOLDER = "{camera}"


def topic_for(pattern: str, camera: str) -> str:
    """``pattern`` with each literal {camera} replaced by ``camera``; nothing in it is interpreted otherwise."""
    return pattern.replace(CAMERA_PLACEHOLDER, camera)


PARAMETERS: dict[str, Limits] = {f.name: f.metadata["limits"] for f in fields(NodeParams)}
"""Every node parameter by name, in declaration order, with its Limits (description included)."""
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(NodeParams)}
"""Every node parameter's default value."""


def describe(name: str) -> str:
    """The one-line description of parameter ``name``."""
    return PARAMETERS[name].description


def validate(values: dict[str, Any]) -> NodeParams:
    """NodeParams from raw values (defaults for the absent ones); ValueError naming the parameter and the problem."""
    merged = {name: values[name] for name in PARAMETERS if name in values}
    for name in ("cameras", "image_types", "marker_hidden_classes"):
        if name in merged:
            merged[name] = tuple(merged[name])
    if len(merged.get("image_types", ())) == 1:  # one type for every camera
        merged["image_types"] *= len(merged.get("cameras", DEFAULTS["cameras"]))
    if merged.get("checkpoint"):
        path = Path(merged["checkpoint"]).expanduser()
        merged["checkpoint"] = str(path.resolve()) if path.is_file() else str(path)
    try:
        return NodeParams(**merged)
    except SettingError as error:
        raise ValueError(f"parameter '{error.name}': {error.why} (got {error.value!r})") from None


INT_MAX = 2**63 - 1


def descriptor(name: str) -> ParameterDescriptor:
    """The read-only ROS ParameterDescriptor of parameter ``name``: its description, range and choices."""
    limits = PARAMETERS[name]
    out = ParameterDescriptor(description=limits.description, read_only=True)
    if limits.positive:
        out.floating_point_range = [FloatingPointRange(from_value=0.0, to_value=sys.float_info.max, step=0.0)]
        out.additional_constraints = "> 0"
    elif limits.multiple_of is not None:
        step = limits.multiple_of
        out.integer_range = [IntegerRange(from_value=step, to_value=step * 1024, step=step)]
        out.additional_constraints = f"a multiple of {step}"
    elif limits.at_least is not None:
        out.integer_range = [IntegerRange(from_value=limits.at_least, to_value=INT_MAX, step=1)]
        out.additional_constraints = f">= {limits.at_least}"
    elif limits.choices:
        out.additional_constraints = "one of " + ", ".join(limits.choices)
    elif limits.pattern_text:
        out.additional_constraints = limits.pattern_text
    else:
        out.additional_constraints = limits.note
    return out


ROS_TYPES = {bool: "bool", int: "integer", float: "double", str: "string"}


def _type_and_default(name: str) -> tuple[str, str]:
    """The README's Type and Default cells of parameter ``name``."""
    default = DEFAULTS[name]
    if isinstance(default, tuple):
        if name == "cameras":
            return "string[]", "the six nuScenes cameras, model order"
        shown = f"{len(default)} x `{default[0]}`" if default and len(set(default)) == 1 else f"`{list(default)}`"
        return "string[]", shown
    return ROS_TYPES[type(default)], f"`{default!r}`".replace("'", '"') if isinstance(default, str) else \
        f"`{str(default).lower() if isinstance(default, bool) else default}`"


def markdown_table() -> str:
    """The README's Parameters table, from the declarations (test_params keeps the README equal to it)."""
    rows = ["| Name | Type | Default | Accepted | Description |", "| --- | --- | --- | --- | --- |"]
    for name in PARAMETERS:
        kind, default = _type_and_default(name)
        accepted = "true or false" if isinstance(DEFAULTS[name], bool) else descriptor(name).additional_constraints
        rows.append(f"| `{name}` | {kind} | {default} | {accepted} | {describe(name)} |")
    return "\n".join(rows)
