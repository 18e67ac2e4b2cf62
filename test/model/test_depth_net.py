"""Depth net: checkpoint names, the 27-value camera vector's order, output shapes and softmax at 256x704."""

from __future__ import annotations

import torch

from gsdocc_ros.model.depth_net import CMDepthNet, camera_mlp_input
from gsdocc_ros.model.inputs import ModelInputs


def _inputs(batch: int = 1, cams: int = 2) -> ModelInputs:
    """Calibration tensors whose every entry is distinct, so any reordering shows."""
    values = iter(torch.arange(10_000, dtype=torch.float32))

    def take(*shape: int) -> torch.Tensor:
        return torch.stack([next(values) for _ in range(torch.Size(shape).numel())]).reshape(shape)

    return ModelInputs(imgs=torch.zeros(batch, cams, 3, 4, 4), rots=take(batch, cams, 3, 3),
                       trans=take(batch, cams, 3), intrins=take(batch, cams, 3, 3),
                       post_rots=take(batch, cams, 3, 3), post_trans=take(batch, cams, 3), bda=take(batch, 3, 3))


def test_depth_net_keys_and_shapes_match_reference(reference_under, state_shapes) -> None:
    assert state_shapes(CMDepthNet()) == reference_under("depth_net")


def test_camera_mlp_input_order() -> None:
    inputs = _inputs(batch=2, cams=3)
    mlp = camera_mlp_input(inputs)
    assert mlp.shape == (2, 3, 27)
    b, n = 1, 2
    k, pr, pt, bda = inputs.intrins[b, n], inputs.post_rots[b, n], inputs.post_trans[b, n], inputs.bda[b]
    r, t = inputs.rots[b, n], inputs.trans[b, n]
    expected = [k[0, 0], k[1, 1], k[0, 2], k[1, 2],
                pr[0, 0], pr[0, 1], pt[0], pr[1, 0], pr[1, 1], pt[1],
                bda[0, 0], bda[0, 1], bda[1, 0], bda[1, 1], bda[2, 2],
                r[0, 0], r[0, 1], r[0, 2], t[0], r[1, 0], r[1, 1], r[1, 2], t[1], r[2, 0], r[2, 1], r[2, 2], t[2]]
    assert mlp[b, n].tolist() == torch.stack(expected).tolist()


def test_depth_net_shapes_softmax_and_camera_awareness_at_256x704() -> None:
    torch.manual_seed(0)
    net = CMDepthNet().eval()
    feats = torch.randn(1, 2, 512, 16, 44)
    mlp = torch.randn(1, 2, 27)
    with torch.no_grad():
        depth, context = net(feats, mlp)
        depth_other, context_other = net(feats, mlp + 1.0)
    assert depth.shape == (1, 2, 80, 16, 44) and context.shape == (1, 2, 80, 16, 44)
    assert torch.allclose(depth.sum(dim=2), torch.ones(1, 2, 16, 44), atol=1e-5)
    assert (depth >= 0).all()
    assert not torch.allclose(depth, depth_other) and not torch.allclose(context, context_other)


def test_aspp_dilations_and_image_pool_size() -> None:
    torch.manual_seed(0)
    aspp = CMDepthNet(in_channels=8, mid_channels=8, context_channels=2, depth_channels=3).depth_conv[3].eval()
    with torch.no_grad():
        pooled = aspp.global_avg_pool(torch.randn(1, 8, 5, 9))
    assert pooled.shape == (1, 8, 1, 1)
    assert [m.dilation for m in (aspp.aspp1.atrous_conv, aspp.aspp2.atrous_conv, aspp.aspp3.atrous_conv,
                                 aspp.aspp4.atrous_conv)] == [(1, 1), (6, 6), (12, 12), (18, 18)]
