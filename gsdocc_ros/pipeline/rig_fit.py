"""Resize and crop of a camera that is not a nuScenes one, chosen so the network sees what it was trained on.

The official preprocessing (pipeline.preprocess.image_transform) scales every image by input width / source width
and keeps the bottom rows. On nuScenes' 1600x900 cameras that puts a focal length of about 0.79 input widths on the
network input, the principal point near the middle column and 0.30 input heights from the top. The depth net reads
intrinsics, but its depth bins and image features were learnt at that scale only, so another rig should reach the
same scale rather than the same width ratio.

The rule, per camera, with K's fx and principal point (cx, cy) in source pixels and (in_h, in_w) the network input:

1. scale s = TARGET_FOCAL * in_w / fx: the scaled focal length equals the training one;
2. if the image resized by s would not cover the input (too narrow a field of view), s grows to the smallest scale
   that covers it, max(in_w / W, in_h / H): the focal length is then as close as the image allows, and no
   zero padding (which training never saw) is needed;
3. the crop places the scaled principal point at (TARGET_CX * in_w, TARGET_CY * in_h), clamped so the crop stays
   inside the resized image: the horizon and the optical axis sit where they sat in training.

The targets are the medians over the six cameras of the real nuScenes sample under the official preprocessing
(CAM_BACK, the wide one, is the outlier the median ignores); test/pipeline/test_rig_fit.py recomputes them from
../shared/data and checks the rule against a brute-force search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gsdocc_ros.pipeline.preprocess import ImageTransform, check_size

TARGET_FOCAL = 0.78761
"""Training focal length (px) per network-input width pixel: median fx of the six nuScenes cameras x 704/1600 / 704."""
TARGET_CX = 0.50757
"""Training principal point column per input width pixel (median over the six cameras, official crop)."""
TARGET_CY = 0.29899
"""Training principal point row per input height pixel (median over the six cameras, official bottom crop)."""


def fitted_transform(src_hw: Sequence[int], intrinsics: np.ndarray, input_hw: Sequence[int]) -> ImageTransform:
    """The resize and crop of the module rule for a ``src_hw`` image with pinhole matrix ``intrinsics`` (3, 3)."""
    src_h, src_w = check_size(src_hw, "src_hw")
    in_h, in_w = check_size(input_hw, "input_hw")
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (3, 3) or not k[0, 0] > 0:
        raise ValueError(f"intrinsics: expected a (3, 3) pinhole matrix with fx > 0, got {k.tolist()}")
    fx, cx, cy = k[0, 0], k[0, 2], k[1, 2]
    cover = max(in_w / src_w, in_h / src_h)
    scale = max(TARGET_FOCAL * in_w / fx, cover)
    new_w, new_h = max(int(src_w * scale), in_w), max(int(src_h * scale), in_h)  # int() may lose the last pixel
    x0 = int(np.clip(round(scale * cx - TARGET_CX * in_w), 0, new_w - in_w))
    y0 = int(np.clip(round(scale * cy - TARGET_CY * in_h), 0, new_h - in_h))
    return ImageTransform(scale=scale, crop=(x0, y0, x0 + in_w, y0 + in_h), resized_wh=(new_w, new_h))
