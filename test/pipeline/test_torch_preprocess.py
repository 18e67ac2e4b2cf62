"""On-device preprocessing (torch bicubic antialias, two passes) against the exact Pillow path on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gsdocc_ros.model.gsdocc import GSDOCC
from gsdocc_ros.pipeline.frames import load_sample_frames
from gsdocc_ros.pipeline.preprocess import (IMAGE_STD_RGB, image_transform, normalise_bgr, preprocess_images,
                                            resize_and_crop)
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig
from gsdocc_ros.pipeline.torch_preprocess import TorchPreprocessor, normalisation_table, resize_and_crop_torch

SCENES = ("scene-0061_ca9a282c", "scene-0003_fd842039")
ONE_LEVEL = 1.0 / min(IMAGE_STD_RGB)
"""Largest change of a normalised value when its byte moves by one level."""


@pytest.fixture(scope="module")
def scene_images(shared_data: Path) -> dict[str, list[np.ndarray]]:
    """The six real 1600x900 RGB images of each sample scene, in model camera order."""
    return {scene: [f.image for f in load_sample_frames(shared_data / "nuscenes_sample" / scene).frames]
            for scene in SCENES}


@pytest.mark.parametrize("input_hw", [(256, 704), (512, 1408)])
@pytest.mark.parametrize("scene", SCENES)
def test_resized_bytes_match_pillow(scene_images: dict[str, list[np.ndarray]], scene: str,
                                    input_hw: tuple[int, int]) -> None:
    """Resized + cropped bytes are Pillow's up to rare one-level (once two-level) float32 rounding differences.

    Bound chosen from measurement on these 12 images (benchmarks/preprocess_match.py, CPU, torch 2.13): max |diff|
    1 level at 256x704 and 2 at 512x1408 (one value of 78M), at most 1.2e-4 of the values differ; a single-pass
    float resize (no rounding between the passes) would differ in about 13 % of the values and fail here.
    """
    images = scene_images[scene]
    transform = image_transform(images[0].shape[:2], input_hw)
    pillow = np.stack([resize_and_crop(image, transform) for image in images]).astype(np.int16)  # (N, H, W, 3)
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # [N,3,H,W] uint8
    ours = resize_and_crop_torch(batch, transform)
    assert ours.shape == (6, 3, *input_hw)
    assert torch.equal(ours, ours.round()) and ours.min() >= 0 and ours.max() <= 255
    diff = np.abs(ours.permute(0, 2, 3, 1).numpy().astype(np.int16) - pillow)
    assert diff.max() <= 2
    assert np.count_nonzero(diff) / diff.size < 3e-4
    assert diff.mean() < 3e-4


def test_network_input_matches_preprocess_images(scene_images: dict[str, list[np.ndarray]]) -> None:
    """The normalised tensor equals the official table applied to the torch bytes, within one level of Pillow."""
    images = scene_images["scene-0061_ca9a282c"]
    preprocessor = TorchPreprocessor((256, 704))
    imgs, post_rots, post_trans = preprocessor(images)
    expected, expected_rots, expected_trans = preprocess_images(images, (256, 704))
    np.testing.assert_array_equal(post_rots, expected_rots)
    np.testing.assert_array_equal(post_trans, expected_trans)
    assert imgs.dtype == torch.float32 and imgs.shape == (6, 3, 256, 704)
    assert np.abs(imgs.numpy() - expected).max() <= ONE_LEVEL * 1.0001
    transform = image_transform(images[0].shape[:2], (256, 704))
    ours_bytes = resize_and_crop_torch(torch.from_numpy(images[2].copy()).permute(2, 0, 1)[None], transform)
    ours_rgb = ours_bytes[0].permute(1, 2, 0).numpy().astype(np.uint8)
    np.testing.assert_array_equal(imgs[2].numpy(), normalise_bgr(ours_rgb))  # the normalisation itself is exact


def test_normalisation_table_is_the_official_one() -> None:
    """Table entry c*256 + v is (v - mean_c) * (1 / std_c) in float64 with float32-stored constants, then cast."""
    table = normalisation_table().numpy().reshape(3, 256)
    v = np.arange(256, dtype=np.float64)
    for channel, (mean, std) in enumerate(((123.675, 58.395), (116.28, 57.12), (103.53, 57.375))):  # B, G, R
        mean64, std64 = np.float64(np.float32(mean)), np.float64(np.float32(std))
        np.testing.assert_array_equal(table[channel], ((v - mean64) * (1.0 / std64)).astype(np.float32))


def test_mixed_source_sizes_and_buffer_reuse(scene_images: dict[str, list[np.ndarray]]) -> None:
    """Cameras of different sizes go through per-size batches; the output tensor is allocated once."""
    images = list(scene_images["scene-0003_fd842039"])
    images[4] = np.asarray(Image.fromarray(images[4]).resize((1920, 1080), Image.Resampling.BICUBIC))
    preprocessor = TorchPreprocessor((256, 704))
    first, post_rots, post_trans = preprocessor(images)
    pointer = first.data_ptr()
    expected, expected_rots, expected_trans = preprocess_images(images, (256, 704))
    np.testing.assert_array_equal(post_rots, expected_rots)
    np.testing.assert_array_equal(post_trans, expected_trans)
    assert np.abs(first.numpy() - expected).max() <= 2 * ONE_LEVEL * 1.0001
    second, _, _ = preprocessor(images[::-1])
    assert second.data_ptr() == pointer
    assert np.abs(second.numpy() - expected[::-1]).max() <= 2 * ONE_LEVEL * 1.0001


def test_crop_outside_the_image_is_zero_filled(scene_images: dict[str, list[np.ndarray]]) -> None:
    """A source too short for the crop gets Pillow's zero rows at the top, as the official loader does."""
    image = scene_images["scene-0061_ca9a282c"][1][:300]  # 1600x300: resized to 704x132, crop starts 124 rows above
    with pytest.warns(UserWarning, match="zero-filled"):
        expected, _, _ = preprocess_images([image], (256, 704))
    with pytest.warns(UserWarning, match="zero-filled"):
        ours, _, _ = TorchPreprocessor((256, 704))([image])
    zero = normalise_bgr(np.zeros((1, 1, 3), dtype=np.uint8))[:, 0, 0]  # (3,) normalised black
    np.testing.assert_array_equal(ours[0, :, :124].numpy(), np.broadcast_to(zero[:, None, None], (3, 124, 704)))
    assert np.abs(ours.numpy() - expected).max() <= ONE_LEVEL * 1.0001


def test_rejects_non_rgb_images() -> None:
    """A grey or float image is refused with the camera's index in the message."""
    preprocessor = TorchPreprocessor((256, 704))
    with pytest.raises(ValueError, match=r"images\[1\]"):
        preprocessor([np.zeros((900, 1600, 3), np.uint8), np.zeros((900, 1600), np.uint8)])
    with pytest.raises(ValueError, match="input_hw"):
        TorchPreprocessor((256, 0))


def test_runner_switch(shared_data: Path) -> None:
    """RunnerConfig.preprocess picks the path: pillow on CPU by default, torch on request, unknown names refused."""
    with pytest.raises(ValueError, match="preprocess"):
        RunnerConfig(preprocess="opencv")
    frames = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0003_fd842039").frames
    model = GSDOCC()
    exact = OccupancyRunner(model, RunnerConfig(device="cpu")).prepare_inputs(frames)
    ours = OccupancyRunner(model, RunnerConfig(device="cpu", preprocess="torch")).prepare_inputs(frames)
    expected, _, _ = preprocess_images([f.image for f in frames], (256, 704))
    np.testing.assert_array_equal(exact.imgs[0].numpy(), expected)  # auto on CPU = the exact Pillow path
    assert ours.imgs.shape == (1, 6, 3, 256, 704)
    assert 0 < np.abs(ours.imgs[0].numpy() - expected).max() <= ONE_LEVEL * 1.0001
    for name in ("rots", "trans", "intrins", "post_rots", "post_trans"):
        assert torch.equal(getattr(ours, name), getattr(exact, name)), name
