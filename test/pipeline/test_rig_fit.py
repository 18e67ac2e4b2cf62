"""The per-camera resize and crop of non-nuScenes rigs: targets from the real nuScenes calibration, the rule against a
brute-force search on 1920x1080, 1920x1200 and 1280x720 cameras, and the nuScenes cameras themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gsdocc_ros.pipeline.preprocess import image_transform
from gsdocc_ros.pipeline.rig_fit import TARGET_CX, TARGET_CY, TARGET_FOCAL, fitted_transform

INPUT_HW = (256, 704)


@pytest.fixture(scope="module")
def nuscenes_k(shared_data: Path) -> dict[str, np.ndarray]:
    """K (3, 3) of the six real nuScenes cameras (1600x900)."""
    calib = json.loads((shared_data / "nuscenes_sample" / "scene-0061_ca9a282c" / "calib.json").read_text())
    return {name: np.asarray(cam["intrinsics"]) for name, cam in calib["cameras"].items()}


def on_input(transform, k: np.ndarray) -> tuple[float, float, float]:
    """(focal, principal column, principal row) on the network input, in input pixels."""
    return transform.scale * k[0, 0], transform.scale * k[0, 2] - transform.crop[0], \
        transform.scale * k[1, 2] - transform.crop[1]


def test_targets_are_the_official_preprocessing_of_the_nuscenes_cameras(nuscenes_k: dict[str, np.ndarray]) -> None:
    seen = np.array([on_input(image_transform((900, 1600), INPUT_HW), k) for k in nuscenes_k.values()])  # (6, 3)
    median = np.median(seen, axis=0)
    assert median / (INPUT_HW[1], INPUT_HW[1], INPUT_HW[0]) == pytest.approx((TARGET_FOCAL, TARGET_CX, TARGET_CY),
                                                                            abs=1e-5)


def k_of(fx: float, width: int, height: int) -> np.ndarray:
    """A pinhole K with the principal point a little off the image centre, as calibrations give it."""
    return np.array([[fx, 0.0, width / 2 + 7.3], [0.0, fx, height / 2 - 11.6], [0.0, 0.0, 1.0]])


def brute_force(src_hw: tuple[int, int], k: np.ndarray) -> tuple[float, float]:
    """(focal error, principal point error) of the best covering scale and crop, searched over 200,000 scales."""
    in_h, in_w = INPUT_HW
    target = np.array([TARGET_FOCAL * in_w, TARGET_CX * in_w, TARGET_CY * in_h])
    scale = np.linspace(0.05, 4.0, 200_000)
    new_w, new_h = (src_hw[1] * scale).astype(int), (src_hw[0] * scale).astype(int)
    covers = (new_w >= in_w) & (new_h >= in_h)
    scale, new_w, new_h = scale[covers], new_w[covers], new_h[covers]
    focal_error = np.abs(scale * k[0, 0] - target[0])
    x0 = np.clip(scale * k[0, 2] - target[1], 0, new_w - in_w)
    y0 = np.clip(scale * k[1, 2] - target[2], 0, new_h - in_h)
    pp_error = np.hypot(scale * k[0, 2] - x0 - target[1], scale * k[1, 2] - y0 - target[2])
    best = np.argmin(focal_error)
    return float(focal_error[best]), float(pp_error[best])


@pytest.mark.parametrize(("width", "height", "fx"), [
    (1920, 1080, 1000.0),  # a 88 degree automotive camera
    (1920, 1200, 1150.0),  # an 80 degree machine-vision camera
    (1280, 720, 640.0),    # a 90 degree USB camera
    (1280, 720, 2400.0),   # a telephoto: too narrow to reach the training focal without padding
    (1920, 1200, 300.0),   # a fisheye-like rectified view: upscaled
])
def test_the_rule_is_the_best_covering_fit(width: int, height: int, fx: float) -> None:
    k = k_of(fx, width, height)
    transform = fitted_transform((height, width), k, INPUT_HW)
    new_w, new_h = transform.resized_wh
    x0, y0, x1, y1 = transform.crop
    assert 0 <= x0 and x1 <= new_w and 0 <= y0 and y1 <= new_h  # inside the image: no padding
    assert (x1 - x0, y1 - y0) == (INPUT_HW[1], INPUT_HW[0])
    focal, cx, cy = on_input(transform, k)
    target = (TARGET_FOCAL * INPUT_HW[1], TARGET_CX * INPUT_HW[1], TARGET_CY * INPUT_HW[0])
    focal_error, pp_error = brute_force((height, width), k)
    assert abs(focal - target[0]) <= focal_error + 0.5
    assert np.hypot(cx - target[1], cy - target[2]) <= pp_error + 1.0
    if fx < 2000:  # wide enough: the training focal is reached exactly, the principal point within a pixel
        assert focal == pytest.approx(target[0], abs=1e-6) and pp_error <= 1.0


def test_scale_is_the_same_on_both_axes_and_post_transforms_follow(nuscenes_k: dict[str, np.ndarray]) -> None:
    transform = fitted_transform((1200, 1920), k_of(1150.0, 1920, 1200), INPUT_HW)
    assert np.allclose(transform.post_rot, np.diag([transform.scale, transform.scale, 1.0]))
    assert transform.post_tran.tolist() == [-transform.crop[0], -transform.crop[1], 0.0]
    with pytest.raises(ValueError, match="fx > 0"):
        fitted_transform((900, 1600), np.zeros((3, 3)), INPUT_HW)
