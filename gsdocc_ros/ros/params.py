"""The node's parameters: one table of names, defaults and descriptions, declared and validated at start-up.

config/gsdocc.yaml and the README's Parameters table are kept equal to PARAMETERS by a test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rclpy.exceptions import InvalidTopicNameException
from rclpy.validate_topic_name import validate_topic_name

from gsdocc_ros.deploy.backends import BACKENDS
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA
from gsdocc_ros.pipeline.grid import CLASS_NAMES
from gsdocc_ros.pipeline.runner import CADENCES, PRECISIONS, RunnerConfig


@dataclass(frozen=True)
class NodeParams:
    """Validated parameters of the occupancy node (names are the ROS parameter names)."""

    cameras: tuple[str, ...] = CAMERA_NAMES
    """Camera names in the model's order; each names its topics and is the image frame_id by default."""
    image_topic_format: str = "/{camera}/image_rect_compressed"
    """Image topic of each camera; {camera} is replaced by the camera name."""
    camera_info_topic_format: str = "/{camera}/camera_info"
    """CameraInfo topic of each camera; {camera} is replaced by the camera name."""
    image_types: tuple[str, ...] = ("compressed",) * 6
    """Per camera: compressed (sensor_msgs/CompressedImage, jpeg/png) or raw (sensor_msgs/Image rgb8/bgr8/mono8)."""
    key_camera: str = KEY_CAMERA
    """Camera whose stamp and ego pose define the output's stamp and frame."""
    ego_frame: str = "base_link"
    """Ego frame (REP-105) of the output grid and of the extrinsics."""
    fixed_frame: str = "map"
    """World-fixed frame (map or odom) through which ego poses at different stamps are chained."""
    sync_slop_s: float = 0.06
    """Approximate-time window of one camera set; nuScenes sets span about 42 ms in an 83 ms period."""
    sync_queue_size: int = 10
    """Messages kept per camera while a set is assembled."""
    tf_wait_s: float = 0.2
    """How long the worker waits for tf to reach a set's stamps before counting a tf failure."""
    checkpoint: str = ""
    """Path of the GSD-OCC checkpoint (official .pth or our own format)."""
    allow_random_weights: bool = False
    """Start without a checkpoint on seeded random weights (demos and tests only: the output is meaningless)."""
    trust_pickle: bool = False
    """Allow a checkpoint that needs arbitrary unpickling (runs code from the file: only for files you trust)."""
    device: str = "cuda"
    """cpu, cuda or cuda:N; falls back to CPU with a warning when CUDA is absent."""
    precision: str = "fp32"
    """fp32, fp16 or bf16 (autocast; fp16 on CUDA only)."""
    backend: str = "torch"
    """Runtime of the network: torch, or onnxruntime, onnxruntime-tensorrt, openvino, tensorrt on graph_dir's graph."""
    graph_dir: str = ""
    """Folder written by `gsdocc export` (ONNX graph + manifest); needed by every backend but torch."""
    input_height: int = 256
    """Network input height per camera (256 or 512 for the official configs)."""
    input_width: int = 704
    """Network input width per camera (704 or 1408 for the official configs)."""
    cadence: str = "keyframe"
    """keyframe: infer on sets 0.5 s apart (training cadence); every_frame: infer on every set, push history at 0.5 s."""
    history_step_s: float = 0.5
    """Seconds per temporal-history step (the model was trained on 2 Hz keyframes)."""
    cadence_tolerance_s: float = 0.05
    """A set counts as a history step when at most this much earlier than the next 0.5 s target."""
    max_gap_s: float = 1.5
    """Reset the temporal cache after this many seconds without a history step."""
    max_jump_m: float = 20.0
    """Reset the temporal cache when the ego moves farther than this between history steps."""
    publish_confidence: bool = True
    """Fill the grid's per-voxel confidence."""
    publish_camera_mask: bool = False
    """Fill the grid's camera-visibility mask (needed by marker_camera_visible_only)."""
    marker_hidden_classes: tuple[str, ...] = ()
    """Class names never drawn as markers (e.g. driveable_surface); free is never drawn."""
    marker_camera_visible_only: bool = False
    """Draw only voxels inside some camera's view."""
    marker_max_voxels: int = 60000
    """Cap on the number of drawn voxels (RViz2 slows down beyond a few tens of thousands of cubes)."""
    marker_lifetime_s: float = 1.0
    """Marker lifetime; keep it at least the output period so markers do not flicker."""
    diagnostics_period_s: float = 1.0
    """Period of the /diagnostics status."""

    def runner_config(self) -> RunnerConfig:
        """The inference settings of these parameters."""
        return RunnerConfig(device=self.device, precision=self.precision, backend=self.backend,
                            graph_dir=self.graph_dir, cadence=self.cadence,
                            history_step_s=self.history_step_s, cadence_tolerance_s=self.cadence_tolerance_s,
                            max_gap_s=self.max_gap_s, max_jump_m=self.max_jump_m,
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


PARAMETERS: dict[str, Any] = {f.name: f for f in fields(NodeParams)}
"""Every node parameter by name (dataclass fields carry default and type)."""


def describe(name: str) -> str:
    """The one-line description of parameter ``name`` (the attribute docstring in NodeParams)."""
    return _DESCRIPTIONS[name]


def _attribute_docstrings() -> dict[str, str]:
    """Attribute docstrings of NodeParams, read from this file's source (one place for every description)."""
    import ast

    tree = ast.parse(Path(__file__).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NodeParams")
    docs, last = {}, None
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            last = node.target.id
        elif last and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            docs[last], last = node.value.value.strip(), None
    return docs


_DESCRIPTIONS = _attribute_docstrings()


def validate(values: dict[str, Any]) -> NodeParams:
    """NodeParams from raw values; ValueError naming the parameter and what is wrong."""
    defaults = NodeParams()
    merged = {name: values.get(name, getattr(defaults, name)) for name in PARAMETERS}
    for name in ("cameras", "image_types", "marker_hidden_classes"):
        merged[name] = tuple(merged[name])

    def fail(name: str, why: str) -> None:
        raise ValueError(f"parameter '{name}': {why} (got {merged[name]!r})")

    cams = merged["cameras"]
    if len(cams) != len(CAMERA_NAMES):
        fail("cameras", f"the model takes exactly {len(CAMERA_NAMES)} cameras")
    if len(set(cams)) != len(cams) or not all(isinstance(c, str) and c for c in cams):
        fail("cameras", "names must be distinct, non-empty strings")
    if len(merged["image_types"]) != len(cams):
        fail("image_types", f"needs one entry per camera ({len(cams)})")
    if any(t not in ("compressed", "raw") for t in merged["image_types"]):
        fail("image_types", "each entry must be 'compressed' or 'raw'")
    if merged["key_camera"] not in cams:
        fail("key_camera", "must be one of 'cameras'")
    for name in ("image_topic_format", "camera_info_topic_format"):
        pattern = str(merged[name])
        if pattern.replace(CAMERA_PLACEHOLDER, "").count("{") or pattern.replace(CAMERA_PLACEHOLDER, "").count("}"):
            fail(name, "may hold only the {camera} placeholder, no other {...} field")
        if CAMERA_PLACEHOLDER not in pattern:
            fail(name, "must contain {camera} (each camera needs its own topic)")
        for camera in cams:
            try:
                validate_topic_name(topic_for(pattern, camera))
            except InvalidTopicNameException as error:
                fail(name, f"gives the invalid topic name {topic_for(pattern, camera)!r} for {camera} "
                           f"({str(error).splitlines()[0]})")
    for name in ("ego_frame", "fixed_frame"):
        if not merged[name] or merged[name].startswith("/"):
            fail(name, "must be a non-empty frame id without a leading '/'")
    if merged["precision"] not in PRECISIONS:
        fail("precision", f"must be one of {tuple(PRECISIONS)}")
    if merged["backend"] not in BACKENDS:
        fail("backend", f"must be one of {BACKENDS}")
    if merged["cadence"] not in CADENCES:
        fail("cadence", f"must be one of {CADENCES}")
    device = str(merged["device"])
    if not (device in ("cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        fail("device", "must be cpu, cuda or cuda:N")
    for name in ("sync_slop_s", "tf_wait_s", "history_step_s", "max_gap_s", "max_jump_m", "marker_lifetime_s",
                 "diagnostics_period_s"):
        value = merged[name]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            fail(name, "must be a positive finite number")
    if not 0 <= merged["cadence_tolerance_s"] < merged["history_step_s"] / 2:
        fail("cadence_tolerance_s", "must be >= 0 and below half of history_step_s")
    for name, low in (("sync_queue_size", 1), ("marker_max_voxels", 1)):
        if not isinstance(merged[name], int) or merged[name] < low:
            fail(name, f"must be an integer >= {low}")
    for name, multiple in (("input_height", 32), ("input_width", 32)):
        if not isinstance(merged[name], int) or merged[name] <= 0 or merged[name] % multiple:
            fail(name, f"must be a positive multiple of {multiple} (the backbone's stride)")
    unknown = sorted(set(merged["marker_hidden_classes"]) - set(CLASS_NAMES))
    if unknown:
        fail("marker_hidden_classes", f"unknown class name(s) {unknown}; known: {', '.join(CLASS_NAMES)}")
    checkpoint = merged["checkpoint"]
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            fail("checkpoint", "no such file")
        merged["checkpoint"] = str(path.resolve())
    elif not merged["allow_random_weights"]:
        fail("checkpoint", "no checkpoint given; set one, or allow_random_weights:=true for a demo "
                           "(the output is then meaningless)")
    return NodeParams(**merged)
