"""Camera frames: one decoded image with its calibration, and the six-camera set the model takes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gsdocc_ros.pipeline.geometry import camera_to_key_ego

CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT",
)
"""The official camera order of the model's input (gsdocc_model.md section 1)."""

KEY_CAMERA = "CAM_FRONT"
"""The camera whose stamp and ego pose define the key ego frame of a set."""


@dataclass
class CameraFrame:
    """One camera image with what the lifting needs to place its pixels in the key ego frame."""

    name: str
    """Camera name, e.g. CAM_FRONT."""
    image: np.ndarray
    """uint8 (H, W, 3) RGB image."""
    intrinsics: np.ndarray
    """float64 (3, 3) pinhole matrix K of this image's pixels."""
    cam_to_ego: np.ndarray
    """float64 (4, 4) camera -> key-ego transform (ego pose at the key camera's stamp)."""
    stamp_ns: int
    """Exposure stamp of the image, in nanoseconds."""


def order_frames(frames: Sequence[CameraFrame], names: Sequence[str] = CAMERA_NAMES) -> list[CameraFrame]:
    """``frames`` sorted into ``names`` order; ValueError naming the missing or repeated cameras."""
    by_name: dict[str, CameraFrame] = {}
    for frame in frames:
        if frame.name in by_name:
            raise ValueError(f"camera {frame.name} appears twice in one set")
        by_name[frame.name] = frame
    missing = [name for name in names if name not in by_name]
    extra = sorted(set(by_name) - set(names))
    if missing or extra:
        raise ValueError(f"camera set mismatch: missing {missing or 'none'}, unexpected {extra or 'none'}")
    return [by_name[name] for name in names]


@dataclass
class SampleFrames:
    """A six-camera nuScenes keyframe read from a calib.json of ../shared/data/nuscenes_sample."""

    frames: list[CameraFrame]
    """The six cameras in CAMERA_NAMES order, extrinsics relative to the key (CAM_FRONT) ego pose."""
    key_ego2global: np.ndarray
    """float64 (4, 4) ego pose at the CAM_FRONT stamp."""
    sample_ego2global: np.ndarray
    """float64 (4, 4) ego pose at the sample (LIDAR_TOP) stamp: the pose the temporal warp uses."""
    sample_token: str
    stamp_ns: int
    """The CAM_FRONT stamp in nanoseconds."""
    cameras: dict[str, dict]
    """The raw per-camera calibration records (sensor2ego, ego2global at the camera time, ...)."""
    record: dict
    """The whole frame record of calib.json (lidar file, lidar2ego, ...)."""


def load_sample_frames(scene_dir: str | Path, frame_index: int = 0, load_images: bool = True) -> SampleFrames:
    """Read one keyframe from a nuscenes_sample scene folder's calib.json (both of its layouts)."""
    scene_dir = Path(scene_dir)
    calib = json.loads((scene_dir / "calib.json").read_text())
    record = calib["frames"][frame_index] if "frames" in calib else calib
    cameras = record["cameras"]
    key_pose = np.asarray(cameras[KEY_CAMERA]["ego2global"], dtype=np.float64)
    frames = []
    for name in CAMERA_NAMES:
        cam = cameras[name]
        if load_images:
            if not cam.get("image"):
                raise FileNotFoundError(f"{scene_dir}: frame {frame_index} has no image for {name}")
            image = np.asarray(Image.open(scene_dir / cam["image"]).convert("RGB"))
        else:
            image = np.zeros((cam.get("height", 900), cam.get("width", 1600), 3), dtype=np.uint8)
        frames.append(CameraFrame(
            name=name,
            image=image,
            intrinsics=np.asarray(cam["intrinsics"], dtype=np.float64),
            cam_to_ego=camera_to_key_ego(cam["sensor2ego"], cam["ego2global"], key_pose),
            stamp_ns=int(cam["timestamp_us"]) * 1000,
        ))
    return SampleFrames(
        frames=frames,
        key_ego2global=key_pose,
        sample_ego2global=np.asarray(record["ego2global"], dtype=np.float64),
        sample_token=record["sample_token"],
        stamp_ns=int(cameras[KEY_CAMERA]["timestamp_us"]) * 1000,
        cameras=cameras,
        record=record,
    )
