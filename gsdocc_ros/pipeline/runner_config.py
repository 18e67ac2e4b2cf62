"""How the runner executes the model and keeps its temporal cache: RunnerConfig, its choices, no torch needed.

Importable without torch so that command-line parsers and the node's parameter declarations can offer the same
choices and limits (gsdocc_ros/pipeline/settings.py) before anything heavy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from gsdocc_ros.pipeline.choices import BACKENDS, CADENCES, IMAGE_FITS, PRECISION_NAMES, PREPROCESSORS, SPLATS
from gsdocc_ros.pipeline.settings import SettingError, check_settings, setting

DEVICE_PATTERN = r"cpu|cuda(:\d+)?"


@dataclass(frozen=True)
class RunnerConfig:
    """How the runner executes the model and keeps its temporal cache (limits checked on construction)."""

    device: str = setting("cpu", "cpu, cuda or cuda:N; falls back to CPU with a warning when CUDA is absent.",
                          pattern=DEVICE_PATTERN, pattern_text="cpu, cuda or cuda:N")
    precision: str = setting("fp32", "fp32, fp16 or bf16 (autocast; fp16 on CUDA only).", choices=PRECISION_NAMES)
    cadence: str = setting("keyframe", "keyframe: infer on sets 0.5 s apart (training cadence); every_frame: infer "
                           "on every set, push history at 0.5 s.", choices=CADENCES)
    history_step_s: float = setting(0.5, "Seconds per temporal-history step (the model was trained on 2 Hz "
                                    "keyframes).", positive=True)
    cadence_tolerance_s: float = setting(0.05, "A set counts as a history step when at most this much earlier "
                                         "than the next 0.5 s target.", note=">= 0 and < history_step_s / 2")
    """Least slack of the history cadence: a set is a history step when it comes at most this much (or half the
    observed set period, if larger, up to 0.45 steps) before 0.5 s after the last step. At 12 Hz this picks every
    sixth set; on a 2 Hz keyframe replay, with its 0.4-0.6 s gaps, every set. Must be >= 0 and below half of
    history_step_s."""
    max_gap_s: float = setting(1.5, "Reset the temporal cache after this many seconds without a history step.",
                               positive=True)
    max_jump_m: float = setting(20.0, "Reset the temporal cache when the ego moves farther than this between "
                                "history steps.", positive=True)
    confidence: bool = setting(True, "Return the per-voxel probability of the chosen class.")
    camera_mask: bool = setting(False, "Return the camera-visibility mask of the output voxels.")
    image_fit: str = setting("official", "official: nuScenes resize and bottom crop; intrinsics: per-camera scale/crop "
                             "to the training focal and centre.", choices=IMAGE_FITS)
    """official: the nuScenes resize and bottom crop (exact for nuScenes cameras); intrinsics: per camera, the scale
    and crop that put the training focal length and principal point on the network input (pipeline.rig_fit)."""
    preprocess: str = setting("auto", "pillow: the exact official preprocessing on the host; torch: the same on "
                              "the model's device, within one or two uint8 levels of Pillow; auto: torch on CUDA, "
                              "pillow on CPU.", choices=PREPROCESSORS)
    channels_last: bool = setting(True, "Store the conv weights channels-last (pipeline.acceleration): faster on "
                                  "CPU, same values.")
    splat: str = setting("auto", "BEV pooling: indices, a sparse product whose indices are cached per calibration "
                         "(fastest on a CPU, but building them reads sizes back from the device); scatter, one "
                         "fixed-size index_add that never makes the host wait for a GPU; auto: scatter on CUDA, "
                         "indices on CPU.", choices=SPLATS)

    backend: str = setting("torch", "Runtime of the network: torch, or onnxruntime, onnxruntime-tensorrt, openvino, "
                           "tensorrt on graph_dir's graph.", choices=BACKENDS)
    """torch: the model's own modules; the others run the graph `gsdocc export` wrote into graph_dir, with the same
    temporal cache decisions (gsdocc_ros.deploy)."""
    graph_dir: str = setting("", "Folder written by `gsdocc export` (ONNX graph + manifest); needed by every backend "
                             "but torch.", note="a `gsdocc export` folder, or empty with backend torch")

    def __post_init__(self) -> None:
        check_settings(self)
        if not 0 <= self.cadence_tolerance_s < self.history_step_s / 2:
            raise SettingError("cadence_tolerance_s", "must be >= 0 and below half of history_step_s",
                               self.cadence_tolerance_s)
