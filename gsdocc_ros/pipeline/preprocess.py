"""The official test-time image preprocessing: Pillow bicubic resize, bottom crop, BGR normalisation.

Bit-exact with the official loader (gsdocc_model.md sections 1, 8.1 and 9.5): scale s = input_W / src_W,
Pillow resize to (int(W s), int(H s)) with the bicubic filter, crop box (x0, newH - input_H, x0 + input_W,
newH) with x0 centring a wider image, then (v - mean) * (1 / std) in float64 cast to float32, in BGR order, with
mean and std first rounded to float32 as the official loader stores them (float64 constants leave 367 of the 768
table entries one ulp off; gsdocc_model.md section 9, item 5).

Sources whose resized image does not cover the input (a very wide rig, or W s rounding down by one pixel):
the crop box then leaves the image and the missing rows (top) or columns are zero-filled, exactly as
Pillow's ``crop`` does in the official loader; ``post_tran`` stays consistent with it. The network never saw
such padding in training, so ``image_transform`` warns once per call site when it happens.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGE_MEAN_RGB = (123.675, 116.28, 103.53)
"""Per-channel mean of the official normalisation, listed in RGB order but applied to B, G, R (section 1)."""
IMAGE_STD_RGB = (58.395, 57.12, 57.375)
"""Per-channel std of the official normalisation, paired with IMAGE_MEAN_RGB."""


def _as_stored(constants: Sequence[float]) -> np.ndarray:
    """float64 (3,) of ``constants`` rounded to float32 first: the official loader keeps mean and std as float32."""
    return np.asarray(constants, dtype=np.float32).astype(np.float64)


_MEAN = _as_stored(IMAGE_MEAN_RGB)
_INV_STD = 1.0 / _as_stored(IMAGE_STD_RGB)


def _normalisation_table() -> np.ndarray:
    """Table (3, 256) float32: output channel c (B, G, R) of byte value v, computed in float64 then cast."""
    values = np.arange(256, dtype=np.float64)
    return ((values[None, :] - _MEAN[:, None]) * _INV_STD[:, None]).astype(np.float32)  # (3, 256)


_BGR_TABLE = _normalisation_table()


@dataclass(frozen=True)
class ImageTransform:
    """Resize then crop of one camera image, with the matching pixel transform the lifting undoes."""

    scale: float
    """Resize factor s applied to both axes."""
    crop: tuple[int, int, int, int]
    """Crop box (x0, y0, x1, y1) in resized pixels; may leave the resized image (then zero-filled)."""
    resized_wh: tuple[int, int]
    """(W, H) of the resized image before cropping: (int(W s), int(H s))."""

    @property
    def post_rot(self) -> np.ndarray:
        """float32 (3, 3) diag(s, s, 1): source pixel -> resized pixel."""
        return np.diag([self.scale, self.scale, 1.0]).astype(np.float32)

    @property
    def post_tran(self) -> np.ndarray:
        """float32 (3,) (-x0, -y0, 0): resized pixel -> network input pixel."""
        return np.array([-self.crop[0], -self.crop[1], 0.0], dtype=np.float32)


def check_size(hw: Sequence[int], name: str) -> tuple[int, int]:
    """``hw`` as a pair of positive ints; ValueError naming ``name`` otherwise."""
    if len(hw) != 2 or any(int(v) != v or v <= 0 for v in hw):
        raise ValueError(f"{name}: expected (height, width) as two positive integers, got {tuple(hw)}")
    return int(hw[0]), int(hw[1])


def image_transform(src_hw: Sequence[int], input_hw: Sequence[int]) -> ImageTransform:
    """The official test-time resize + bottom crop taking a ``src_hw`` image to the network's ``input_hw``."""
    src_h, src_w = check_size(src_hw, "src_hw")
    in_h, in_w = check_size(input_hw, "input_hw")
    scale = float(in_w) / float(src_w)
    new_w, new_h = int(src_w * scale), int(src_h * scale)
    x0 = int(max(0, new_w - in_w) / 2)
    y0 = new_h - in_h
    if y0 < 0 or new_w < in_w:
        warnings.warn(
            f"image_transform: a {src_w}x{src_h} image resized by {scale:.6g} to {new_w}x{new_h} does not cover "
            f"the {in_w}x{in_h} network input; the missing pixels are zero-filled as in the official loader, "
            "which the network never saw in training", stacklevel=2)
    return ImageTransform(scale=scale, crop=(x0, y0, x0 + in_w, y0 + in_h), resized_wh=(new_w, new_h))


def check_image(image: np.ndarray, name: str) -> None:
    """Raise ValueError naming ``name`` unless ``image`` is an HxWx3 uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{name}: expected an HxWx3 uint8 RGB array (convert mono/BGRA/16-bit images first), "
                         f"got {desc}")


def resize_and_crop(image: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """Apply ``transform`` to an HxWx3 uint8 RGB image with Pillow's bicubic filter; returns the cropped uint8 image."""
    check_image(image, "image")
    resized = Image.fromarray(image).resize(transform.resized_wh, Image.Resampling.BICUBIC)
    return np.asarray(resized.crop(transform.crop))  # (H, W, 3)


def normalise_bgr(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (3, H, W) in BGR order, bit-exact with the official normalisation (a table
    look-up)."""
    check_image(image, "image")
    return np.stack([_BGR_TABLE[c].take(image[..., 2 - c]) for c in range(3)])  # (3, H, W)


def normalise_bgr_reference(image: np.ndarray) -> np.ndarray:
    """Slow, obvious twin of ``normalise_bgr``: the float64 formula per pixel, cast to float32."""
    check_image(image, "image")
    bgr = image[..., ::-1].astype(np.float64)  # (H, W, 3) B, G, R
    out = (bgr - _MEAN) * _INV_STD
    return out.astype(np.float32).transpose(2, 0, 1)  # (3, H, W)


def preprocess_images(images: Sequence[np.ndarray], input_hw: Sequence[int],
                      transforms: Sequence[ImageTransform] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Official preprocessing of N RGB uint8 images (sizes may differ per camera) to the network input; each
    image's resize and crop is ``transforms[i]`` when given (pipeline.rig_fit), else the official one.

    Returns imgs float32 (N, 3, H, W) BGR-normalised, post_rots float32 (N, 3, 3), post_trans float32 (N, 3).
    """
    in_h, in_w = check_size(input_hw, "input_hw")
    if len(images) == 0:
        raise ValueError("images: expected at least one camera image, got none")
    imgs = np.empty((len(images), 3, in_h, in_w), dtype=np.float32)  # (N, 3, H, W)
    post_rots = np.empty((len(images), 3, 3), dtype=np.float32)  # (N, 3, 3)
    post_trans = np.empty((len(images), 3), dtype=np.float32)  # (N, 3)
    for i, image in enumerate(images):
        check_image(image, f"images[{i}]")
        transform = transforms[i] if transforms is not None else image_transform(image.shape[:2], (in_h, in_w))
        imgs[i] = normalise_bgr(resize_and_crop(image, transform))
        post_rots[i] = transform.post_rot
        post_trans[i] = transform.post_tran
    return imgs, post_rots, post_trans
