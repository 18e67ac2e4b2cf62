"""The official test-time preprocessing in torch, on the model's device (GPU when the model is on the GPU).

Same result as ``pipeline.preprocess`` (Pillow bicubic resize, bottom crop, BGR normalisation) up to rare
one-level differences of the resized bytes (one value of 78 million was two levels off). Pillow resizes a uint8
image in two separable passes, width then height, rounding (half up) and clipping to uint8 after each; torch's
``interpolate(mode="bicubic", antialias=True)`` implements the same filter (a = -0.5, support widened by the
downscale factor) in float, so each pass here is one 1-D torch resize followed by the same rounding. What remains
is float32 against Pillow's 22-bit fixed-point weights: on the 12 real nuScenes images about 1 value in 10^4 lands
one level off, where a single float pass without the intermediate rounding would move 13 % of them
(benchmarks/preprocess_match.py measures it and the label changes; test/pipeline/test_torch_preprocess.py holds the
bound). The normalisation is a look-up into the table of ``preprocess.normalise_bgr``, so it adds
no error of its own.

Cameras of one source size go through one batched call. The uint8 upload goes through a ``staging.UploadBuffer``
(pinned, asynchronous on CUDA); the staging buffers and the output are allocated once per source size and reused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gsdocc_ros.pipeline.preprocess import ImageTransform, check_image, check_size, image_transform, normalise_bgr
from gsdocc_ros.pipeline.staging import Uploader


def normalisation_table(device: torch.device | str = "cpu") -> Tensor:
    """(3*256,) float32: entry c*256 + v is output channel c (B, G, R) of byte value v, from ``normalise_bgr``."""
    gray = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3): R = G = B = v
    return torch.from_numpy(normalise_bgr(gray).reshape(-1)).to(device)  # (3*256,)


def _round_half_up_uint8(x: Tensor) -> Tensor:
    """Pillow's rounding of a resampled value to a byte: floor(x + 0.5) clipped to [0, 255], kept as float."""
    return x.add_(0.5).floor_().clamp_(0.0, 255.0)


def resize_and_crop_torch(images: Tensor, transform: ImageTransform) -> Tensor:
    """Resize + crop a uint8 batch [N,3,H,W] (RGB) like Pillow's bicubic; returns byte values as float [N,3,h,w].

    Out-of-image crop rows/columns are zero, as Pillow's ``crop`` fills them.
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"images: expected a uint8 tensor [N,3,H,W], got {images.dtype} {list(images.shape)}")
    src_h = images.shape[2]
    new_w, new_h = transform.resized_wh
    x = images.float()  # [N,3,H,W]
    x = _round_half_up_uint8(F.interpolate(x, size=(src_h, new_w), mode="bicubic", antialias=True,
                                           align_corners=False))  # [N,3,H,w'] width pass
    x = _round_half_up_uint8(F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True,
                                           align_corners=False))  # [N,3,h',w'] height pass
    x0, y0, x1, y1 = transform.crop
    return F.pad(x, (-x0, x1 - new_w, -y0, y1 - new_h))  # [N,3,h,w] negative pads crop, positive pads zero-fill


class TorchPreprocessor:
    """Callable doing ``preprocess_images`` on ``device``: uint8 RGB images in, the network's input tensor out."""

    def __init__(self, input_hw: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.input_hw = check_size(input_hw, "input_hw")
        self.device = torch.device(device)
        self._table = normalisation_table(self.device)  # (768,)
        self._offsets = torch.arange(3, device=self.device).view(1, 3, 1, 1) * 256  # [1,3,1,1] B, G, R
        self._upload = Uploader(self.device)
        self._out: Tensor | None = None

    def __call__(self, images: Sequence[np.ndarray], transforms: Sequence[ImageTransform] | None = None
                 ) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """N HxWx3 uint8 RGB images -> (imgs float32 [N,3,H,W] BGR-normalised on the device, post_rots float32
        (N, 3, 3), post_trans float32 (N, 3)); ``transforms`` as in preprocess_images. The returned tensor is
        reused by the next call."""
        in_h, in_w = self.input_hw
        if len(images) == 0:
            raise ValueError("images: expected at least one camera image, got none")
        groups: dict[tuple[tuple[int, int], ImageTransform], list[int]] = {}
        for i, image in enumerate(images):
            check_image(image, f"images[{i}]")
            transform = transforms[i] if transforms is not None else image_transform(image.shape[:2], (in_h, in_w))
            groups.setdefault((image.shape[:2], transform), []).append(i)
        if self._out is None or self._out.shape[0] != len(images):
            self._out = torch.empty(len(images), 3, in_h, in_w, dtype=torch.float32, device=self.device)
        post_rots = np.empty((len(images), 3, 3), dtype=np.float32)  # (N, 3, 3)
        post_trans = np.empty((len(images), 3), dtype=np.float32)  # (N, 3)
        for ((src_h, src_w), transform), members in groups.items():
            staging = self._upload.buffer((src_h, src_w), (len(members), src_h, src_w, 3), torch.uint8)
            host = staging.writable()  # (n, H, W, 3)
            for slot, i in enumerate(members):
                host[slot] = images[i]
            resized = resize_and_crop_torch(staging.upload().permute(0, 3, 1, 2), transform)  # [n,3,h,w] RGB bytes
            index = resized.flip(1).long() + self._offsets  # [n,3,h,w] flat table index, channels B, G, R
            normalised = self._table[index]  # [n,3,h,w]
            if len(members) == len(images):
                self._out.copy_(normalised)
            else:  # slice by slice: an index tensor would be an upload of its own
                for slot, i in enumerate(members):
                    self._out[i].copy_(normalised[slot])
            post_rots[members] = transform.post_rot
            post_trans[members] = transform.post_tran
        return self._out, post_rots, post_trans
