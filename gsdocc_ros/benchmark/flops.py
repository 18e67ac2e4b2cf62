"""The network's FLOPs per stage over one step, with the sparse BEV splat counted by its non-zeros."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOP_MODULES = {"image_encoder": ("img_backbone", "img_neck"), "depth_net": ("depth_net",),
                "bev_pool": ("forward_projection",),
                "temporal_fusion": ("history_keyframe_time_conv", "history_keyframe_cat_conv"),
                "bev_encoder": ("img_bev_encoder_backbone", "img_bev_encoder_neck"), "occ_head": ("occupancy_head",)}
"""Stage -> the GSDOCC submodules whose counted FLOPs belong to it."""


def count_flops(model: nn.Module, step: Callable[[], dict[str, tuple[tuple[Any, ...], Any]]]) -> dict[str, Any]:
    """FLOPs per stage of one call of ``step`` (an untimed step of ``model`` that returns each stage's captured
    arguments and result); the splat, which the counter sees as a dense product, is charged as sparse."""
    counter = FlopCounterMode(display=False)
    with counter:
        captured = step()
    counts = counter.get_flop_counts()
    root = type(model).__name__
    per_stage = {stage: sum(sum(counts.get(f"{root}.{name}", {}).values()) for name in modules)
                 for stage, modules in FLOP_MODULES.items()}
    counted_splat = per_stage["bev_pool"]
    (_, context, inputs), _ = captured["bev_pool"]
    indices = model.forward_projection.pool_indices(inputs.rots, inputs.trans, inputs.intrins, inputs.post_rots,
                                                    inputs.post_trans, inputs.bda)
    # W (voxels x pixels, P non-zeros) @ context (pixels x C): 2 P C, plus one add per kept frustum point into W
    per_stage["bev_pool"] = 2 * indices.col.numel() * context.shape[2] + indices.depth_index.numel()
    total = counter.get_total_flops() - counted_splat + per_stage["bev_pool"]
    return {"network": total, "per_stage": per_stage, "splat_counted_as_dense": counted_splat,
            "method": "torch.utils.flop_counter.FlopCounterMode over one step (2 FLOPs per multiply-add); the sparse "
                      "BEV splat, which the counter sees as a dense mm, counted as 2 * nnz * C + K"}
