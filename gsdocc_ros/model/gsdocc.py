"""GSD-OCC top level: images + calibration + temporal cache -> occupancy logits.

Attributes are registered in the official checkpoint's key order, so ``list(model.state_dict())`` equals
the reference key list. Shapes follow the legend of gsdocc_ros.model.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from gsdocc_ros.model.bev_encoder import BEVResNet, FPNLSS
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.depth_net import CMDepthNet, camera_mlp_input
from gsdocc_ros.model.image_encoder import CustomFPN, ResNet50
from gsdocc_ros.model.layers import conv_bn_relu
from gsdocc_ros.model.occ_head import DecoupleOccHead
from gsdocc_ros.model.temporal import TemporalCache, fuse_history
from gsdocc_ros.model.inputs import ModelInputs
from gsdocc_ros.model.view_transform import LSSViewTransform


class GSDOCC(nn.Module):
    """The GSD-OCC network; stateless apart from the TemporalCache passed to ``forward``.

    ``forward`` calls the stage methods ``encode_images``, ``estimate_depth``, ``lift``, ``fuse``,
    ``encode_bev`` and ``head`` in order, so a benchmark can time each of them. Built in eval mode.
    """

    def __init__(self, cfg: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        context = cfg.context_channels
        self.img_backbone = ResNet50()
        self.img_neck = CustomFPN((1024, 2048), cfg.fpn_channels)
        self.forward_projection = LSSViewTransform(cfg)
        self.img_bev_encoder_backbone = BEVResNet(cfg.history_out_channels, cfg.bev_channels)
        self.img_bev_encoder_neck = FPNLSS(sum(cfg.bev_channels), cfg.bev_out_channels)
        self.depth_net = CMDepthNet(cfg.fpn_channels, cfg.depth_mid_channels, context, cfg.grid.num_depth_bins)
        self.occupancy_head = DecoupleOccHead(cfg)
        self.history_keyframe_time_conv = conv_bn_relu(nn.Conv2d(context + 1, context, 1))
        self.history_keyframe_cat_conv = conv_bn_relu(
            nn.Conv2d(context * (cfg.history_frames + 1), cfg.history_out_channels, 1))
        self.eval()

    def encode_images(self, imgs: Tensor) -> Tensor:
        """imgs [B,N,3,H,W] -> image features [B,N,512,H/16,W/16]."""
        B, N = imgs.shape[:2]
        c4, c5 = self.img_backbone(imgs.flatten(0, 1))  # [B*N,1024,H/16,W/16], [B*N,2048,H/32,W/32]
        return self.img_neck(c4, c5).unflatten(0, (B, N))  # [B,N,512,H/16,W/16]

    def estimate_depth(self, feats: Tensor, inputs: ModelInputs) -> tuple[Tensor, Tensor]:
        """feats [B,N,512,h,w] -> (depth [B,N,D,h,w], context [B,N,C,h,w])."""
        return self.depth_net(feats, camera_mlp_input(inputs))

    def lift(self, depth: Tensor, context: Tensor, inputs: ModelInputs) -> Tensor:
        """Splat context weighted by depth into the ego voxel grid -> [B,C,Y,X,Z]."""
        return self.forward_projection(depth, context, inputs)

    def fuse(self, voxel_feat: Tensor, inputs: ModelInputs, cache: TemporalCache, curr_to_prev_ego: Tensor,
             start_of_sequence: bool, commit: bool = True, elapsed_steps: float = 1.0) -> Tensor:
        """Height-mean the voxels and fuse with the warped history -> [B,256,Y,X]."""
        bev = voxel_feat.mean(dim=-1)  # [B,C,Y,X]
        return fuse_history(bev, cache, curr_to_prev_ego, inputs.bda, self.history_keyframe_time_conv,
                            self.history_keyframe_cat_conv, start_of_sequence, commit=commit,
                            elapsed_steps=elapsed_steps, step_s=self.cfg.history_step_s)

    def encode_bev(self, fused_bev: Tensor) -> Tensor:
        """fused_bev [B,256,Y,X] -> BEV encoder feature [B,256,Y,X]."""
        return self.img_bev_encoder_neck(self.img_bev_encoder_backbone(fused_bev))

    def head(self, bev_feat: Tensor, fused_bev: Tensor, voxel_feat: Tensor) -> Tensor:
        """BEV feature, fused BEV and voxel feature -> logits [B,18,2Y,2X,2Z]."""
        return self.occupancy_head(bev_feat, fused_bev, voxel_feat)

    def forward(self, inputs: ModelInputs, cache: TemporalCache, curr_to_prev_ego: Tensor,
                start_of_sequence: bool, commit: bool = True, elapsed_steps: float = 1.0) -> Tensor:
        """One frame: returns logits [B,18,Y,X,Z] on the output grid and advances ``cache`` when committing.

        curr_to_prev_ego [B,4,4] maps the current ego frame to the last committed one (identity at a start).
        """
        feats = self.encode_images(inputs.imgs)  # [B,N,512,h,w]
        depth, context = self.estimate_depth(feats, inputs)  # [B,N,D,h,w], [B,N,C,h,w]
        voxel_feat = self.lift(depth, context, inputs)  # [B,C,Y,X,Z]
        fused_bev = self.fuse(voxel_feat, inputs, cache, curr_to_prev_ego, start_of_sequence,
                              commit=commit, elapsed_steps=elapsed_steps)  # [B,256,Y,X]
        bev_feat = self.encode_bev(fused_bev)  # [B,256,Y,X]
        return self.head(bev_feat, fused_bev, voxel_feat)  # [B,18,2Y,2X,2Z]

    def reparameterize(self) -> None:
        """Merge the head's large-kernel block into its deploy form, in place (call after loading weights)."""
        self.occupancy_head.reparameterize()


def logits_to_labels(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over classes, then swap Y/X into the Occ3D (x, y, z) layout.

    logits [B,18,Y,X,Z] -> (labels uint8 [B,X,Y,Z], max probability [B,X,Y,Z]); argmax after the softmax, as official.
    """
    probs = logits.movedim(1, -1).softmax(dim=-1)  # [B,Y,X,Z,18]; a view of the head's channels-last logits
    confidence, labels = probs.max(dim=-1)  # [B,Y,X,Z] each; one pass, the first maximal class on ties like argmax
    return labels.to(torch.uint8).transpose(1, 2).contiguous(), confidence.transpose(1, 2).contiguous()  # [B,X,Y,Z]
