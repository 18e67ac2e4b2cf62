"""The ROS-free inference step: model + device + temporal cache + history cadence.

The node, the tools and the tests all drive this one class: camera frames and the ego pose in,
an OccupancyGrid out. It owns the decisions that keep the temporal cache honest (gsdocc_model.md
section 2.6, field_notes.md section 1): the history advances in 0.5 s steps as in training, ego
motion comes from the poses at the image stamps, and the cache resets on a new sequence, time
going backwards, a gap, or a pose jump.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gsdocc_ros.model.checkpoint import build_model
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.gsdocc import GSDOCC, logits_to_labels
from gsdocc_ros.model.inputs import ModelInputs
from gsdocc_ros.model.temporal import TemporalCache
from gsdocc_ros.pipeline.acceleration import configure_backend, to_channels_last
from gsdocc_ros.pipeline.choices import PRECISION_NAMES
from gsdocc_ros.pipeline.frames import CameraFrame
from gsdocc_ros.pipeline.geometry import ego_motion, invert_transform
from gsdocc_ros.pipeline.grid import OccupancyGrid
from gsdocc_ros.pipeline.preprocess import ImageTransform, image_transform, preprocess_images
from gsdocc_ros.pipeline.rig_fit import fitted_transform
from gsdocc_ros.pipeline.runner_config import RunnerConfig
from gsdocc_ros.pipeline.staging import Uploader
from gsdocc_ros.pipeline.torch_preprocess import TorchPreprocessor

LOGGER = logging.getLogger(__name__)

PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16)))
"""Precision name -> the dtype autocast runs in (fp32: no autocast)."""


@dataclass
class StepResult:
    """What one inference step produced and decided."""

    grid: OccupancyGrid
    start_of_sequence: bool
    """True when the cache was reset before this step."""
    reset_reason: str | None
    """Why the cache was reset (None when it was not)."""
    committed: bool
    """True when this step was pushed into the history."""
    curr_to_prev_ego: np.ndarray
    """float64 (4, 4): the ego motion handed to the model (current ego -> last history step's ego)."""
    elapsed_steps: float
    """Age, in history steps, of the newest history slot as the model saw it."""
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Wall time per stage: preprocess, network, postprocess."""


def resolve_device(name: str) -> tuple[torch.device, str | None]:
    """``name`` as a torch device, falling back to CPU (with the warning text) when CUDA is absent."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device: {name!r} is not a torch device ({error})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return torch.device("cpu"), f"device {name!r} requested but CUDA is not available; running on CPU"
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device: {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise ValueError(f"device: expected cpu, cuda or cuda:N, got {name!r}")
    return device, None


def load_model(checkpoint: str | Path | None, cfg: ModelConfig | None = None, allow_random_weights: bool = False,
               trust_pickle: bool = False, seed: int = 0) -> tuple[GSDOCC, str]:
    """The network with weights from ``checkpoint``, or seeded random weights when explicitly allowed.

    ``cfg`` None takes the config stored in an own-format checkpoint (else the official default).
    Returns the model (merged for inference) and a short description of its weights.
    """
    if checkpoint:  # a missing path, a folder or a file that is no checkpoint: build_model's one-line CheckpointError
        path = Path(checkpoint)
        return build_model(path, trust_pickle=trust_pickle, cfg=cfg), f"GSD-OCC weights {path.name}"
    if not allow_random_weights:
        raise ValueError("checkpoint: no checkpoint given; pass one, or allow random weights explicitly "
                         "(the output is then meaningless)")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GSDOCC(cfg or ModelConfig())
    model.reparameterize()
    return model.eval(), f"GSD-OCC RANDOM WEIGHTS (seed {seed})"


class OccupancyRunner:
    """Runs GSD-OCC on six-camera sets and keeps the temporal cache on the training cadence."""

    def __init__(self, model: GSDOCC, config: RunnerConfig = RunnerConfig(),
                 source: str = "GSD-OCC") -> None:
        self.config = config
        self.device, self.device_warning = resolve_device(config.device)
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision: fp16 needs a CUDA device; use fp32 or bf16 on CPU")
        self.model = model.to(self.device).eval()
        if config.channels_last:
            to_channels_last(self.model)
        configure_backend(self.device)
        on_cuda = self.device.type == "cuda"
        splat = "scatter" if config.splat == "scatter" or (config.splat == "auto" and on_cuda) else "indices"
        if self.model.forward_projection.splat != splat:  # the execution form of the lifting, built for this device
            self.model.forward_projection = self.model.forward_projection.rebuilt(splat)
        self.model_config: ModelConfig = model.cfg
        self.graph = None  # the exported graph's runtime, or None for the torch modules
        if config.backend != "torch":
            from gsdocc_ros.deploy.graph_runner import GraphStep

            if self.device_warning is not None:
                raise ValueError(f"backend {config.backend!r}: {self.device_warning.split(';')[0]}")
            self.graph = GraphStep(self.model, config.backend, config.graph_dir, str(self.device),
                                   torch.get_num_threads(), fp16=config.precision == "fp16")
        self.geometry = model.cfg.occupancy.geometry
        self.source = source
        self.cache = TemporalCache(self.model_config.history_frames, self.model_config.grid)
        self._bda = torch.eye(3, device=self.device)[None]  # [1,3,3] no BEV augmentation at test time
        self._upload = Uploader(self.device)  # the step's host data goes up through buffers made once
        on_device = config.preprocess == "torch" or (config.preprocess == "auto" and on_cuda)
        # the on-device preprocessing, or None for the exact Pillow path on the host
        self.preprocessor = TorchPreprocessor(self.model_config.image.input_size, self.device) if on_device else None
        self._last_stamp_ns: int | None = None
        self._push_stamp_ns: int | None = None
        self._set_intervals: deque[int] = deque(maxlen=9)  # recent gaps between set stamps (ns)
        self._seen_stamp_ns: int | None = None
        self._push_pose: np.ndarray | None = None
        self._sequence_id: Hashable | None = None
        self._reset_request: str | None = "first frame"
        self._resets_requested = 0
        self._lock = threading.Lock()  # the history decisions: wants() may run beside step() in the node
        self._mask_key: bytes | None = None
        self._mask: np.ndarray | None = None

    def reset(self, reason: str = "reset requested") -> None:
        """Drop the history: the next step starts a new sequence."""
        with self._lock:
            self._reset_request = reason
            self._resets_requested += 1

    def wants(self, stamp_ns: int) -> bool:
        """Whether a set stamped ``stamp_ns`` would be inferred (keyframe cadence skips the others).

        Safe to call from another thread while ``step`` runs (the node prepares the next set meanwhile); it
        then judges by the history before that step, so it may say yes to a set that ``step`` will skip.
        """
        with self._lock:
            self._observe(stamp_ns)
            if self.config.cadence == "every_frame" or self._push_stamp_ns is None:
                return True
            return self._reset_reason(stamp_ns, None) is not None or self._on_cadence(stamp_ns)

    def _observe(self, stamp_ns: int) -> None:
        """Track the gaps between incoming set stamps (the camera rate decides the cadence's slack).

        A stamp up to max_gap_s older than the newest seen is a late look at an earlier set (``step`` after
        ``wants`` of a newer one) and changes nothing; further back, time restarted (a bag loop): follow it.
        """
        seen = self._seen_stamp_ns
        if seen is not None and stamp_ns > seen:
            self._set_intervals.append(stamp_ns - seen)
        if seen is None or stamp_ns > seen or seen - stamp_ns > self.config.max_gap_s * 1e9:
            self._seen_stamp_ns = stamp_ns

    def _on_cadence(self, stamp_ns: int) -> bool:
        """True when ``stamp_ns`` is due as the next history step: one step after the last, less the slack."""
        assert self._push_stamp_ns is not None
        step_ns = round(self.config.history_step_s * 1e9)
        period_ns = float(np.median(self._set_intervals)) if self._set_intervals else 0.0
        slack_ns = min(max(self.config.cadence_tolerance_s * 1e9, period_ns / 2), 0.45 * step_ns)
        return stamp_ns >= self._push_stamp_ns + step_ns - slack_ns

    def _reset_reason(self, stamp_ns: int, sequence_id: Hashable | None) -> str | None:
        """Why the cache must restart before a set at ``stamp_ns``, or None."""
        if self._reset_request is not None:
            return self._reset_request
        if sequence_id is not None and sequence_id != self._sequence_id:
            return f"new sequence {sequence_id!r}"
        assert self._last_stamp_ns is not None and self._push_stamp_ns is not None
        if stamp_ns < self._last_stamp_ns:
            return f"time went backwards by {(self._last_stamp_ns - stamp_ns) / 1e9:.3f} s"
        gap = (stamp_ns - self._push_stamp_ns) / 1e9
        if gap > self.config.max_gap_s:
            return f"{gap:.2f} s since the last history step (max_gap_s {self.config.max_gap_s})"
        return None

    def step(self, frames: Sequence[CameraFrame], ego2global: np.ndarray, stamp_ns: int,
             sequence_id: Hashable | None = None) -> StepResult | None:
        """Infer one camera set; None when the keyframe cadence skips it.

        frames: the cameras in model order (pipeline.frames.order_frames); ego2global: float64 (4, 4)
        ego pose used for the history warp: the node passes the pose at the key camera's stamp, the offline
        evaluation the keyframe's LIDAR_TOP pose as the official code does (the two differ by ~15 ms of motion).
        """
        ego2global = np.asarray(ego2global, dtype=np.float64)
        with self._lock:
            self._observe(stamp_ns)
            resets = self._resets_requested
            reason = self._reset_reason(stamp_ns, sequence_id)
            if reason is None:
                assert self._push_pose is not None
                motion = ego_motion(self._push_pose, ego2global)
                jump = float(np.linalg.norm(motion[:3, 3]))
                if jump > self.config.max_jump_m:
                    reason = (f"ego moved {jump:.1f} m since the last history step "
                              f"(max_jump_m {self.config.max_jump_m})")
            if reason is None and self.config.cadence == "keyframe" and not self._on_cadence(stamp_ns):
                return None
            start = reason is not None
            if start:
                motion = ego_motion(ego2global, ego2global)  # inv(E) @ E, as the official loader passes
                commit, elapsed = True, 1.0
            else:
                commit = self._on_cadence(stamp_ns)
                elapsed = 1.0 if commit else (stamp_ns - self._push_stamp_ns) / 1e9 / self.config.history_step_s

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        inputs = self.prepare_inputs(frames)
        t1 = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            motion_t = self._upload("motion", motion)[None]  # [1,4,4] float64
            if self.graph is None:
                logits = self.model(inputs, self.cache, motion_t, start_of_sequence=start, commit=commit,
                                    elapsed_steps=elapsed)
                labels, confidence = logits_to_labels(logits.float())  # [1,X,Y,Z]
            else:
                labels, confidence = self.graph(inputs, self.cache, motion_t, start, commit, elapsed)
            if self.config.confidence:
                result = torch.stack([labels[0], (confidence[0] * 255).round().to(torch.uint8)])  # [2,X,Y,Z]
            else:
                result = labels  # [1,X,Y,Z]
            result_np = result.cpu().numpy()  # the one device -> host copy (and wait) of the step
            labels_np = result_np[0]
            confidence_np = result_np[1] if self.config.confidence else None
        t2 = time.perf_counter()
        grid = OccupancyGrid(labels=labels_np, stamp_ns=stamp_ns, geometry=self.geometry, confidence=confidence_np,
                             camera_mask=self.camera_mask(frames) if self.config.camera_mask else None)
        t3 = time.perf_counter()
        timings.update(preprocess=(t1 - t0) * 1e3, network=(t2 - t1) * 1e3, postprocess=(t3 - t2) * 1e3)

        with self._lock:
            self._last_stamp_ns = stamp_ns
            self._sequence_id = sequence_id
            if commit:
                self._push_stamp_ns, self._push_pose = stamp_ns, ego2global
            if self._resets_requested == resets:  # a reset requested during this step holds for the next one
                self._reset_request = None
        return StepResult(grid=grid, start_of_sequence=start, reset_reason=reason, committed=commit,
                          curr_to_prev_ego=motion, elapsed_steps=elapsed, timings_ms=timings)

    def prepare_inputs(self, frames: Sequence[CameraFrame]) -> ModelInputs:
        """Official preprocessing of the frames into a batch of one on the model's device."""
        images, transforms = [f.image for f in frames], self.transforms(frames)
        if self.preprocessor is None:
            imgs, post_rots, post_trans = preprocess_images(images, self.model_config.image.input_size, transforms)
        else:
            imgs, post_rots, post_trans = self.preprocessor(images, transforms)  # imgs [N,3,H,W] on the device
        device_imgs = imgs if isinstance(imgs, torch.Tensor) else self._upload("imgs", imgs)  # [N,3,H,W]
        count = len(frames)
        calibration = self._upload("calibration", np.concatenate([  # [N,37] float64: one upload for all of it
            np.stack([f.cam_to_ego for f in frames]).reshape(count, 16), np.stack([f.intrinsics for f in frames])
            .reshape(count, 9), post_rots.reshape(count, 9), post_trans.reshape(count, 3)], axis=1))
        cam_to_ego, intrins, post_rots_t, post_trans_t = (
            part.float()[None] for part in calibration.split((16, 9, 9, 3), dim=1))  # float32 [1,N,k] each
        cam_to_ego = cam_to_ego.view(1, count, 4, 4)
        return ModelInputs(imgs=device_imgs[None], rots=cam_to_ego[:, :, :3, :3].contiguous(),
                           trans=cam_to_ego[:, :, :3, 3].contiguous(), intrins=intrins.view(1, count, 3, 3),
                           post_rots=post_rots_t.view(1, count, 3, 3), post_trans=post_trans_t, bda=self._bda)

    def transforms(self, frames: Sequence[CameraFrame]) -> list[ImageTransform]:
        """Each frame's resize and crop to the network input, by ``config.image_fit``."""
        input_hw = self.model_config.image.input_size
        if self.config.image_fit == "intrinsics":
            return [fitted_transform(f.image.shape[:2], f.intrinsics, input_hw) for f in frames]
        return [image_transform(f.image.shape[:2], input_hw) for f in frames]

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for fp16/bf16; a no-op for fp32."""
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.config.precision])

    def camera_mask(self, frames: Sequence[CameraFrame]) -> np.ndarray:
        """bool (X, Y, Z): output voxels whose centre projects into some camera's network input within the depth bins.

        Cached while the calibration (intrinsics, extrinsics, image sizes) is unchanged.
        """
        key = b"".join(f.intrinsics.tobytes() + f.cam_to_ego.tobytes() + bytes(str(f.image.shape), "ascii")
                       for f in frames)
        if key != self._mask_key:
            self._mask, self._mask_key = self._compute_camera_mask(frames), key
        assert self._mask is not None
        return self._mask

    def _compute_camera_mask(self, frames: Sequence[CameraFrame]) -> np.ndarray:
        grid = self.geometry
        index = np.indices(grid.size).reshape(3, -1).T  # [M,3] (x, y, z)
        centres = np.c_[grid.centres(index).astype(np.float64), np.ones(len(index))]  # [M,4]
        d_min, d_max = self.model_config.grid.depth[:2]
        in_h, in_w = self.model_config.image.input_size
        seen = np.zeros(len(index), dtype=bool)
        for frame, transform in zip(frames, self.transforms(frames)):
            cam = (invert_transform(frame.cam_to_ego) @ centres.T)[:3]  # [3,M] camera frame
            depth = cam[2]
            front = (depth >= d_min) & (depth < d_max)
            pix = frame.intrinsics @ cam[:, front]  # [3,m]
            u = pix[0] / pix[2] * transform.scale + transform.post_tran[0]
            v = pix[1] / pix[2] * transform.scale + transform.post_tran[1]
            inside = (u >= 0) & (u < in_w) & (v >= 0) & (v < in_h)
            seen[np.flatnonzero(front)[inside]] = True
        return seen.reshape(grid.size)
