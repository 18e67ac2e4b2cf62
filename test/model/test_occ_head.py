"""The occupancy head: checkpoint key names and shapes, output shapes, lifting, input checks."""

from __future__ import annotations

import pytest
import torch

from gsdocc_ros.model.occ_head import DecoupleOccHead, lift_to_voxels

Y, X = 6, 8  # reduced BEV size (100x100 in the model); Y != X catches swapped axes


def inputs(batch: int = 2) -> list[torch.Tensor]:
    """img_bev_feat [B,256,Y,X], fused_bev [B,256,Y,X], voxel_feat [B,80,Y,X,8], random."""
    generator = torch.Generator().manual_seed(3)
    return [torch.randn(batch, 256, Y, X, generator=generator), torch.randn(batch, 256, Y, X, generator=generator),
            torch.randn(batch, 80, Y, X, 8, generator=generator)]


def test_head_keys_and_shapes_equal_the_key_file(reference_under, state_shapes) -> None:
    expected = reference_under("occupancy_head")
    assert len(expected) == 112
    assert state_shapes(DecoupleOccHead()) == expected


def test_head_output_is_twice_the_lifting_grid() -> None:
    with torch.no_grad():
        logits = DecoupleOccHead().eval()(*inputs())
    assert logits.shape == (2, 18, 2 * Y, 2 * X, 16)
    assert torch.isfinite(logits).all()


def test_head_lift_is_an_outer_product_along_height() -> None:
    semantic, height = torch.randn(1, 3, 4, 5), torch.rand(1, 7, 4, 5)
    voxels = lift_to_voxels(semantic, height)
    assert voxels.shape == (1, 3, 4, 5, 7)
    assert voxels[0, 2, 1, 3, 6] == semantic[0, 2, 1, 3] * height[0, 6, 1, 3]
    assert voxels.is_contiguous(memory_format=torch.channels_last_3d)  # the layout of the convolutions after it


@pytest.mark.parametrize("index,bad,name", [(0, torch.zeros(1, 128, Y, X), "img_bev_feat"),
                                            (0, torch.zeros(1, 256, Y + 1, X), "img_bev_feat"),
                                            (2, torch.zeros(1, 80, Y, X, 4), "voxel_feat")])
def test_head_wrong_input_shape_names_the_argument(index: int, bad: torch.Tensor, name: str) -> None:
    args = inputs(batch=1)
    args[index] = bad
    with pytest.raises(ValueError, match=name):
        DecoupleOccHead().eval()(*args)
