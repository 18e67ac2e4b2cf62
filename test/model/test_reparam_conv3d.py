"""The large-kernel 3-D block: deploy merge equals the training form; GRN, SE and dilation behave as documented."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsdocc_ros.model.occ_head import DecoupleOccHead
from gsdocc_ros.model.reparam_conv3d import GRN, DilatedReparamBlock3d, SEBlock3d, UniRepLKNetBlock, dilate_kernel

BLOCK = "occupancy_head.unirep_3dconv_layer"
DEPLOY_SHAPES = [  # gsdocc_model.md 2.10, deploy-form table, in state-dict order
    ("dwconv.lk_origin.weight", (80, 1, 11, 11, 1)),
    ("dwconv.lk_origin.bias", (80,)),
    ("se.down.weight", (20, 80, 1, 1, 1)),
    ("se.down.bias", (20,)),
    ("se.up.weight", (80, 20, 1, 1, 1)),
    ("se.up.bias", (80,)),
    ("pwconv1.1.weight", (320, 80)),
    ("pwconv1.1.bias", (320,)),
    ("act.1.gamma", (1, 1, 1, 1, 320)),
    ("pwconv2.0.weight", (80, 320)),
    ("pwconv2.0.bias", (80,)),
]


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Default (fan-in scaled) conv/linear init plus random BN statistics, GRN parameters and layer scale; eval."""
    torch.manual_seed(seed)
    module.apply(lambda m: m.reset_parameters() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) else None)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, GRN):
                m.gamma.normal_(0.0, 0.5)
                m.beta.normal_(0.0, 0.5)
            elif isinstance(m, UniRepLKNetBlock):
                m.gamma.uniform_(0.5, 1.5)  # 1e-6 at init would hide any merge error
    return module.eval()


@pytest.fixture
def block() -> UniRepLKNetBlock:
    return randomize(UniRepLKNetBlock(80, (11, 11, 1)), seed=0)


def test_reparameterized_block_matches_training_form(block: UniRepLKNetBlock) -> None:
    x = torch.randn(2, 80, 13, 15, 4, generator=torch.Generator().manual_seed(1))  # [B,C,Y,X,Z], Y != X
    merged = copy.deepcopy(block)
    merged.reparameterize()
    with torch.no_grad():
        reference, deployed = block(x), merged(x)
    assert (reference - x).abs().max() > 0.1  # the residual branch contributes, so the comparison means something
    assert (deployed - reference).abs().max() < 1e-4


def test_deploy_state_dict_is_the_documented_table(block: UniRepLKNetBlock, state_shapes) -> None:
    block.reparameterize()
    assert state_shapes(block) == DEPLOY_SHAPES


def test_training_form_keys_match_the_key_file(block: UniRepLKNetBlock, reference_under, state_shapes) -> None:
    assert state_shapes(block) == reference_under(BLOCK)


def test_head_reparameterize_matches_and_keeps_the_other_keys(reference_under, state_shapes) -> None:
    head = randomize(DecoupleOccHead(), seed=4)
    generator = torch.Generator().manual_seed(5)
    feats = (torch.randn(1, 256, 6, 8, generator=generator), torch.randn(1, 256, 6, 8, generator=generator),
             torch.randn(1, 80, 6, 8, 8, generator=generator))  # reduced 6x8 BEV grid
    with torch.no_grad():
        reference = head(*feats)
        head.reparameterize()
        deployed = head(*feats)
    assert (deployed - reference).abs().max() < 1e-4
    block = "unirep_3dconv_layer."
    assert [(k, s) for k, s in state_shapes(head) if k.startswith(block)] == [(block + k, s) for k, s in DEPLOY_SHAPES]
    assert [e for e in state_shapes(head) if not e[0].startswith(block)] == \
        [e for e in reference_under("occupancy_head") if not e[0].startswith(block)]


def test_reparameterize_twice_is_a_no_op(block: UniRepLKNetBlock) -> None:
    block.reparameterize()
    before = {k: v.clone() for k, v in block.state_dict().items()}
    block.reparameterize()
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())


@pytest.mark.parametrize("kernel,dilation", [(5, 2), (3, 4)])
def test_dilated_kernel_equals_zero_inserted_dense_kernel(kernel: int, dilation: int) -> None:
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(3, 1, kernel, kernel, 1, generator=generator)
    x = torch.randn(1, 3, 17, 19, 2, generator=generator)
    pad = dilation * (kernel - 1) // 2
    dilated = F.conv3d(x, weight, padding=(pad, pad, 0), dilation=(dilation, dilation, 1), groups=3)
    dense = dilate_kernel(weight, dilation)
    assert dense.shape[2:] == (2 * pad + 1, 2 * pad + 1, 1)
    torch.testing.assert_close(F.conv3d(x, dense, padding=(pad, pad, 0), groups=3), dilated)


def test_dilated_block_rejects_unsupported_kernel() -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        DilatedReparamBlock3d(8, (11, 11, 3))


def test_grn_normalises_over_the_spatial_axes_per_sample() -> None:
    grn = GRN(2)
    with torch.no_grad():
        grn.gamma.fill_(1.0)
    x = torch.zeros(2, 2, 2, 1, 2)  # [B,Y,X,Z,C] channels-last
    x[0, 0, 0, 0, 0], x[0, 1, 1, 0, 1] = 3.0, 1.0  # sample 0: channel norms (3, 1) -> responses (1.5, 0.5)
    x[1, 0, 1, 0, 0], x[1, 1, 0, 0, 1] = 2.0, 2.0  # sample 1: equal norms -> responses (1, 1)
    out = grn(x)
    torch.testing.assert_close(out[0].amax(dim=(0, 1, 2)), torch.tensor([3.0 * 2.5, 1.0 * 1.5]))
    torch.testing.assert_close(out[1].amax(dim=(0, 1, 2)), torch.tensor([4.0, 4.0]), rtol=1e-5, atol=1e-5)


def test_se_scales_without_a_sigmoid() -> None:
    se = SEBlock3d(4, 1)
    with torch.no_grad():
        se.up.weight.zero_()
        se.up.bias.fill_(2.0)  # excitation 2 everywhere: a sigmoid would give 0.88
    x = torch.randn(1, 4, 3, 3, 2)
    torch.testing.assert_close(se(x), 2.0 * x)
