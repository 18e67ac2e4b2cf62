"""One frame step of GSD-OCC as a graph with explicit inputs and outputs, the source of the exported ONNX.

``StepGraph`` wires the model's own modules (no second copy of the network) into a forward free of Python
control flow: the temporal history comes in and goes out as tensors, the start of a sequence is a bool tensor,
and everything that needs a matrix inverse or a data-dependent shape (the camera parameters of the depth net,
the voxel of every frustum point, the history warp) is computed outside by ``GraphInputs`` and fed in. The
runner keeps the one implementation of the cache decisions (reset, commit, fractional ages) for every backend.
Shape legend: N cameras, D depth bins, H, W image, h, w feature map, C context channels, X, Y, Z voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.depth_net import MLP_INPUT_SIZE, camera_mlp_input
from gsdocc_ros.model.gsdocc import GSDOCC, logits_to_labels
from gsdocc_ros.model.inputs import ModelInputs
from gsdocc_ros.model.temporal import TemporalCache, bda_to_4x4, fuse_slots, history_flow
from gsdocc_ros.model.view_transform import scatter_index, splat_scatter


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output: static shape, numpy dtype and what it holds."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    meaning: str


def graph_signature(cfg: ModelConfig, num_cameras: int = 6) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The step graph's inputs and outputs (batch of one) for a model config, in call order."""
    in_h, in_w = cfg.image.input_size
    feat_h, feat_w = cfg.image.feature_size
    size_x, size_y, size_z = cfg.grid.size
    out_x, out_y, out_z = cfg.occupancy.size
    frames, channels, depth_bins = cfg.history_frames, cfg.context_channels, cfg.grid.num_depth_bins
    inputs = [
        TensorSpec("images", (1, num_cameras, 3, in_h, in_w), "float32",
                   "normalised camera images, BGR, official preprocessing (pipeline.preprocess)"),
        TensorSpec("camera_params", (1, num_cameras, MLP_INPUT_SIZE), "float32",
                   "the depth net's 27 camera parameters per camera (model.depth_net.camera_mlp_input)"),
        TensorSpec("voxel_index", (1, num_cameras, depth_bins, feat_h, feat_w), "int64",
                   f"voxel rank ((y*{size_x} + x)*{size_z} + z) of every frustum point, {size_x * size_y * size_z} "
                   "when outside the grid; depends on the calibration only"),
        TensorSpec("history", (1, frames * channels, size_y, size_x), "float32",
                   "the cache's BEV history slots, newest first, in the last committed ego frame (any value when "
                   "start_of_sequence)"),
        TensorSpec("history_ages", (1, frames), "float32",
                   "age of each history slot in history steps as seen now (stored age + elapsed steps)"),
        TensorSpec("history_flow", (1, 4, 4), "float32",
                   "current BEV cell index -> last committed BEV cell index (model.temporal.history_flow)"),
        TensorSpec("start_of_sequence", (1,), "bool",
                   "true: ignore history and history_ages, fill every slot with the current frame at age 0"),
    ]
    outputs = [
        TensorSpec("logits", (1, cfg.occupancy.num_classes, out_y, out_x, out_z), "float32",
                   "class logits on the output grid, [1,classes,Y,X,Z]"),
        TensorSpec("labels", (1, out_x, out_y, out_z), "uint8", "argmax class per voxel after the softmax, (x,y,z)"),
        TensorSpec("confidence", (1, out_x, out_y, out_z), "float32", "softmax probability of that class"),
        TensorSpec("next_history", (1, frames * channels, size_y, size_x), "float32",
                   "the history slots after this frame, for the cache when the runner commits it"),
        TensorSpec("next_history_ages", (1, frames), "float32", "their ages in history steps"),
    ]
    return inputs, outputs


class StepGraph(nn.Module):
    """One frame of GSD-OCC with the history as tensors: ``forward`` takes and returns ``graph_signature``'s."""

    def __init__(self, model: GSDOCC) -> None:
        super().__init__()
        self.model = model
        self.size_xyz = model.cfg.grid.size

    def forward(self, images: Tensor, camera_params: Tensor, voxel_index: Tensor, history: Tensor,
                history_ages: Tensor, history_flow: Tensor, start_of_sequence: Tensor
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The graph inputs in ``graph_signature`` order -> logits, labels, confidence, next_history(_ages)."""
        model = self.model
        frames = history_ages.shape[1]
        feats = model.encode_images(images)  # [1,N,512,h,w]
        depth, context = model.depth_net(feats, camera_params)  # [1,N,D,h,w], [1,N,C,h,w]
        voxel_feat = splat_scatter(depth, context, voxel_index, self.size_xyz).to(context.dtype)  # [1,C,Y,X,Z]
        bev = voxel_feat.mean(dim=-1)  # [1,C,Y,X]
        history = torch.where(start_of_sequence, bev.repeat(1, frames, 1, 1), history)  # [1,15*C,Y,X]
        ages = torch.where(start_of_sequence, torch.zeros_like(history_ages), history_ages)  # [1,15]
        fused, slots, slot_ages = fuse_slots(bev, history, ages, history_flow, model.history_keyframe_time_conv,
                                             model.history_keyframe_cat_conv, model.cfg.history_step_s)
        logits = model.head(model.encode_bev(fused), fused, voxel_feat)  # [1,18,2Y,2X,2Z]
        labels, confidence = logits_to_labels(logits)  # [1,X,Y,Z] each
        return logits, labels, confidence, slots.flatten(1, 2), slot_ages


class GraphInputs:
    """Prepares the step graph's inputs from a frame's ``ModelInputs`` and the runner's ``TemporalCache``.

    The voxel index is computed once per calibration (exactly equal calibration tensors reuse it). Host arrays
    are float32 / int64 numpy, as every runtime takes them.
    """

    def __init__(self, model: GSDOCC) -> None:
        self.model = model
        cfg = model.cfg
        self.frames = cfg.history_frames
        size_x, size_y, _ = cfg.grid.size
        self._empty_history = np.zeros((1, cfg.history_frames * cfg.context_channels, size_y, size_x), np.float32)
        self._empty_ages = np.zeros((1, cfg.history_frames), np.float32)
        self._bev_like = torch.empty(1, cfg.context_channels, size_y, size_x)  # for the cache's shape check
        self._index_key: bytes | None = None
        self._index: np.ndarray | None = None

    def voxel_index(self, inputs: ModelInputs) -> np.ndarray:
        """int64 (1, N, D, h, w) voxel rank of every frustum point for this calibration (cached)."""
        calibration = (inputs.rots, inputs.trans, inputs.intrins, inputs.post_rots, inputs.post_trans, inputs.bda)
        key = b"".join(t.detach().cpu().float().numpy().tobytes() for t in calibration)
        if key != self._index_key:
            view = self.model.forward_projection
            with torch.inference_mode():
                index = scatter_index(view.points(*calibration), view.lower(), view.dx, view.size_xyz)
            self._index, self._index_key = index.cpu().numpy(), key
        assert self._index is not None
        return self._index

    def __call__(self, inputs: ModelInputs, cache: TemporalCache, curr_to_prev_ego: Tensor, start: bool,
                 elapsed_steps: float) -> dict[str, np.ndarray]:
        """Graph inputs for one frame; ``start`` (or an empty cache) begins a sequence, else the cache's history."""
        start = start or cache.is_empty
        bda_curr = bda_to_4x4(inputs.bda)  # [1,4,4] float64
        if start:
            history, ages, bda_prev = self._empty_history, self._empty_ages, bda_curr
        else:
            bev, stored_ages, bda_prev = cache.history(self._bev_like.to(cache.bev.device), elapsed_steps)
            history, ages = bev.cpu().numpy(), stored_ages.cpu().numpy()
        flow = history_flow(curr_to_prev_ego, bda_prev, bda_curr, cache.grid)  # [1,4,4]
        return {"images": inputs.imgs.float().cpu().numpy(), "history": history, "history_ages": ages,
                "camera_params": camera_mlp_input(inputs).float().cpu().numpy(),
                "voxel_index": self.voxel_index(inputs), "history_flow": flow.cpu().numpy(),
                "start_of_sequence": np.array([start])}

    @staticmethod
    def commit(outputs: dict[str, np.ndarray], cache: TemporalCache, bda: Tensor, start: bool) -> None:
        """Store the graph's next history into the cache (the runner decides when); ``start`` as passed to call."""
        ages = torch.from_numpy(outputs["next_history_ages"])  # [1,15]
        slots = torch.from_numpy(outputs["next_history"]).unflatten(1, (ages.shape[1], -1))  # [1,15,C,Y,X]
        cache.store(slots, ages, bda_to_4x4(bda), start)
