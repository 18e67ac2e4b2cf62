"""Official test-time preprocessing: resize/crop numbers, Pillow bicubic on real images, BGR normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsdocc_ros.pipeline.preprocess import (IMAGE_MEAN_RGB, IMAGE_STD_RGB, image_transform, normalise_bgr,
                                            normalise_bgr_reference, preprocess_images)

FRONT_IMAGE = Path("nuscenes_sample") / "scene-0003_fd842039" / "samples" / "imgs" / "CAM_FRONT.jpg"


def official_value(byte: float, mean: float, std: float) -> np.float32:
    """One output value the official way: mean and std kept as float32 (mmcv's arrays), then
    (v - mean) * (1 / std) in double and cast to float32 (gsdocc_model.md, parity checklist item 5)."""
    mean64, std64 = float(np.float32(mean)), float(np.float32(std))
    return np.float32((float(byte) - mean64) * (1.0 / std64))


@pytest.fixture(scope="module")
def front_image(shared_data: Path) -> np.ndarray:
    """The real 1600x900 CAM_FRONT image of scene-0003 as HxWx3 uint8 RGB."""
    return np.asarray(Image.open(shared_data / FRONT_IMAGE).convert("RGB"))


@pytest.mark.parametrize(("input_hw", "scale", "crop"), [
    ((256, 704), 0.44, (0, 140, 704, 396)),
    ((512, 1408), 0.88, (0, 280, 1408, 792)),
])
def test_official_transforms(input_hw: tuple[int, int], scale: float, crop: tuple[int, ...]) -> None:
    """1600x900 -> 256x704 is s = 0.44, crop y0 = 140; 512x1408 is s = 0.88, y0 = 280 (gsdocc_model.md section 1)."""
    transform = image_transform((900, 1600), input_hw)
    assert transform.scale == pytest.approx(scale, abs=1e-15)
    assert transform.crop == crop
    assert transform.resized_wh == (crop[2], crop[3])
    np.testing.assert_array_equal(transform.post_rot, np.diag(np.float32([scale, scale, 1.0])))
    np.testing.assert_array_equal(transform.post_tran, np.float32([0.0, -crop[1], 0.0]))
    assert transform.post_rot.dtype == np.float32 and transform.post_tran.dtype == np.float32


@pytest.mark.parametrize(("src_hw", "resized_wh", "crop"), [
    ((1080, 1920), (704, 396), (0, 140, 704, 396)),
    ((1200, 1920), (704, 439), (0, 183, 704, 439)),  # 1200 * (704 / 1920) = 439.999..., int() -> 439
    ((480, 640), (704, 528), (0, 272, 704, 528)),
])
def test_other_source_sizes(src_hw: tuple[int, int], resized_wh: tuple[int, int], crop: tuple[int, ...]) -> None:
    """Any rig: width scaled to 704 with the official float arithmetic, the bottom 256 rows kept."""
    transform = image_transform(src_hw, (256, 704))
    assert transform.scale == 704 / src_hw[1]
    assert transform.resized_wh == resized_wh
    assert transform.crop == crop


def test_real_image_matches_pillow(front_image: np.ndarray) -> None:
    """The output is Pillow's own bicubic resize + crop, normalised; bilinear would give other pixels."""
    imgs, post_rots, post_trans = preprocess_images([front_image], (256, 704))
    assert imgs.shape == (1, 3, 256, 704) and imgs.dtype == np.float32
    pillow = Image.fromarray(front_image).resize((704, 396), Image.Resampling.BICUBIC).crop((0, 140, 704, 396))
    expected = normalise_bgr_reference(np.asarray(pillow))
    np.testing.assert_array_equal(imgs[0], expected)
    y, x = 100, 300  # one pixel written out in full
    r, g, b = np.asarray(pillow)[y, x].astype(np.float64)
    assert imgs[0, 0, y, x] == official_value(b, 123.675, 58.395)
    assert imgs[0, 2, y, x] == official_value(r, 103.53, 57.375)
    bilinear = Image.fromarray(front_image).resize((704, 396), Image.Resampling.BILINEAR).crop((0, 140, 704, 396))
    assert not np.array_equal(imgs[0], normalise_bgr_reference(np.asarray(bilinear)))
    np.testing.assert_array_equal(post_rots[0], np.diag(np.float32([0.44, 0.44, 1.0])))
    np.testing.assert_array_equal(post_trans[0], np.float32([0.0, -140.0, 0.0]))


def test_bgr_order_and_values() -> None:
    """Channel 0 is blue minus 123.675 over 58.395, channel 2 is red minus 103.53 over 57.375."""
    image = np.empty((4, 5, 3), dtype=np.uint8)
    image[...] = (200, 100, 10)  # R, G, B
    out = normalise_bgr(image)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    assert np.all(out[0] == official_value(10, 123.675, 58.395))
    assert np.all(out[1] == official_value(100, 116.28, 57.12))
    assert np.all(out[2] == official_value(200, 103.53, 57.375))


def test_table_is_exact_for_every_byte() -> None:
    """The look-up table equals the official arithmetic for all 768 entries; float64 constants and the same formula in
    float32 both differ from it (367 and 214 entries; gsdocc_model.md measured 367 against the official outputs)."""
    image = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # (256, 1, 3): byte v in every channel
    fast = normalise_bgr(image)[:, :, 0]  # (3, 256) B, G, R
    np.testing.assert_array_equal(fast, normalise_bgr_reference(image)[:, :, 0])
    official = np.array([[official_value(v, IMAGE_MEAN_RGB[c], IMAGE_STD_RGB[c]) for v in range(256)]
                         for c in range(3)])
    np.testing.assert_array_equal(fast, official)
    values = np.arange(256, dtype=np.float64)
    float64_constants = ((values - np.asarray(IMAGE_MEAN_RGB)[:, None]) * (1.0 / np.asarray(IMAGE_STD_RGB)[:, None]))
    assert np.count_nonzero(float64_constants.astype(np.float32) != fast) == 367
    inv_std32 = np.float32(1.0) / np.float32(IMAGE_STD_RGB)[:, None]
    plain_float32 = (values.astype(np.float32) - np.float32(IMAGE_MEAN_RGB)[:, None]) * inv_std32
    assert np.count_nonzero(plain_float32 != fast) == 214


def test_image_geometry_follows_post_transform() -> None:
    """A bright dot at source pixel p lands at post_rot @ p + post_tran for several rigs.

    Tolerance 1.5 px: Pillow samples pixel centres (a shift of (s - 1) / 2 px) and, like the official code,
    post_rot uses s although int() may have truncated the resized height (1200 rows -> 439, not 440).
    """
    for src_hw, src_xy in (((900, 1600), (1000, 700)), ((1200, 1920), (333, 1100)), ((480, 640), (600, 400))):
        image = np.zeros((*src_hw, 3), dtype=np.uint8)
        x, y = src_xy
        image[y - 3:y + 4, x - 3:x + 4] = 255
        transform = image_transform(src_hw, (256, 704))
        imgs, post_rots, post_trans = preprocess_images([image], (256, 704))
        expected = post_rots[0] @ np.array([x, y, 1.0]) + post_trans[0]
        weight = imgs[0, 1] - imgs[0, 1].min()  # (H, W) brightness above black
        rows, cols = np.indices(weight.shape)
        found_x, found_y = (weight * cols).sum() / weight.sum(), (weight * rows).sum() / weight.sum()
        assert abs(found_x - expected[0]) <= 1.5 and abs(found_y - expected[1]) <= 1.5, (src_hw, transform)


def test_short_image_is_padded_at_top_with_a_warning() -> None:
    """A rig too wide to fill 256 rows after the resize gets zero (black) rows on top, as Pillow's crop does."""
    with pytest.warns(UserWarning, match="does not cover"):
        transform = image_transform((600, 1920), (256, 704))
    assert transform.crop == (0, -37, 704, 219)  # 600 * 704 / 1920 = 219.999... -> 219 rows
    np.testing.assert_array_equal(transform.post_tran, np.float32([0.0, 37.0, 0.0]))
    image = np.full((600, 1920, 3), 255, dtype=np.uint8)
    with pytest.warns(UserWarning, match="does not cover"):
        imgs, _, _ = preprocess_images([image], (256, 704))
    black = normalise_bgr(np.zeros((1, 1, 3), dtype=np.uint8))[:, 0, 0]
    white = normalise_bgr(np.full((1, 1, 3), 255, dtype=np.uint8))[:, 0, 0]
    np.testing.assert_array_equal(imgs[0, :, :37, :], np.broadcast_to(black[:, None, None], (3, 37, 704)))
    np.testing.assert_array_equal(imgs[0, :, 41:, 5:-5], np.broadcast_to(white[:, None, None], (3, 215, 694)))


def test_width_rounding_down_pads_one_column() -> None:
    """W = 138 resizes to 703 columns (float rounding in int(W * 704 / W)); the last column is zero-filled."""
    with pytest.warns(UserWarning, match="does not cover"):
        transform = image_transform((100, 138), (256, 704))
    assert transform.resized_wh[0] == 703 and transform.crop[2] == 704


def test_cameras_may_differ_in_size(front_image: np.ndarray) -> None:
    """Each camera gets its own transform; the network input size is shared."""
    small = np.asarray(Image.fromarray(front_image).resize((1920, 1200)))
    imgs, post_rots, post_trans = preprocess_images([front_image, small], (256, 704))
    assert imgs.shape == (2, 3, 256, 704)
    assert post_rots[0, 0, 0] == np.float32(0.44) and post_rots[1, 0, 0] == np.float32(704 / 1920)
    assert post_trans[0, 1] == -140.0 and post_trans[1, 1] == -183.0


@pytest.mark.parametrize(("bad", "match"), [
    (np.zeros((900, 1600), dtype=np.uint8), "HxWx3 uint8"),
    (np.zeros((900, 1600, 4), dtype=np.uint8), "HxWx3 uint8"),
    (np.zeros((900, 1600, 3), dtype=np.float32), "float32"),
    (np.zeros((900, 1600, 3), dtype=np.uint16), "uint16"),
])
def test_bad_images_are_refused(bad: np.ndarray, match: str) -> None:
    """Mono, RGBA and non-uint8 images raise a ValueError naming the image; the caller converts them."""
    with pytest.raises(ValueError, match=rf"images\[0\]:.*{match}"):
        preprocess_images([bad], (256, 704))


def test_bad_sizes_are_refused() -> None:
    """Empty camera lists and non-positive sizes are refused with the parameter's name."""
    with pytest.raises(ValueError, match="images: expected at least one"):
        preprocess_images([], (256, 704))
    with pytest.raises(ValueError, match="input_hw"):
        image_transform((900, 1600), (0, 704))
    with pytest.raises(ValueError, match="src_hw"):
        image_transform((900.5, 1600), (256, 704))
