"""What the network takes besides its temporal cache: one batch of images and their calibration (legend: model/)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ModelInputs:
    """One batch of camera images and calibration; float32 tensors on the model's device."""

    imgs: Tensor
    """[B,N,3,H,W] normalised images in BGR channel order (see pipeline.preprocess)."""
    rots: Tensor
    """[B,N,3,3] camera -> key-ego rotation."""
    trans: Tensor
    """[B,N,3] camera -> key-ego translation in metres."""
    intrins: Tensor
    """[B,N,3,3] original (unscaled) camera intrinsics."""
    post_rots: Tensor
    """[B,N,3,3] image resize/crop as a 3x3."""
    post_trans: Tensor
    """[B,N,3] image crop offset."""
    bda: Tensor
    """[B,3,3] BEV augmentation; identity at test time."""


