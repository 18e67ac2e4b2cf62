"""How far the torch (on-device) preprocessing lands from the exact Pillow path on the real nuScenes images.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/preprocess_match.py [--device cpu] [--seed 0] [--no-model]
Prints, per scene and input size, the resized-byte difference (uint8 levels, before normalisation), then, at
256x704 with a seeded random-weight model, how many of the 640,000 predicted labels change between the two paths
(one full forward each, start of a sequence).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.gsdocc import logits_to_labels
from gsdocc_ros.model.temporal import TemporalCache
from gsdocc_ros.pipeline.frames import load_sample_frames
from gsdocc_ros.pipeline.preprocess import image_transform, resize_and_crop
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model
from gsdocc_ros.pipeline.torch_preprocess import resize_and_crop_torch
from gsdocc_ros.io.sample_location import sample_data_folder

SAMPLES = sample_data_folder() / "nuscenes_sample"
SCENES = ("scene-0061_ca9a282c", "scene-0003_fd842039")


def byte_difference(images: list[np.ndarray], input_hw: tuple[int, int], device: torch.device) -> np.ndarray:
    """|torch - Pillow| of the resized, cropped bytes of same-size ``images``, int16 (N, H, W, 3)."""
    transform = image_transform(images[0].shape[:2], input_hw)
    pillow = np.stack([resize_and_crop(image, transform) for image in images]).astype(np.int16)
    batch = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2)  # [N,3,H,W] uint8
    ours = resize_and_crop_torch(batch, transform).permute(0, 2, 3, 1).cpu().numpy().astype(np.int16)
    return np.abs(ours - pillow)


def labels_of(runner: OccupancyRunner, frames: list) -> torch.Tensor:
    """Labels [X,Y,Z] of one start-of-sequence forward of ``runner``'s model on ``frames``."""
    inputs = runner.prepare_inputs(frames)
    cache = TemporalCache(runner.model_config.history_frames, runner.model_config.grid)
    motion = torch.eye(4, dtype=torch.float64, device=runner.device)[None]
    with torch.inference_mode():
        logits = runner.model(inputs, cache, motion, start_of_sequence=True, commit=False)
    return logits_to_labels(logits.float())[0][0].cpu()


def main() -> None:
    """Print the byte differences and the label changes; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="device of the torch path and of the model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random model weights")
    parser.add_argument("--no-model", action="store_true", help="skip the two forwards per scene")
    args = parser.parse_args()
    device = torch.device(args.device)
    samples = {scene: load_sample_frames(SAMPLES / scene) for scene in SCENES}
    for input_hw in ((256, 704), (512, 1408)):
        for scene, sample in samples.items():
            diff = byte_difference([f.image for f in sample.frames], input_hw, device)
            print(f"{scene} {input_hw[0]}x{input_hw[1]}: max |diff| {diff.max()} levels, mean {diff.mean():.2e}, "
                  f"{np.count_nonzero(diff)} of {diff.size} values differ ({np.count_nonzero(diff > 1)} by > 1)")
    if args.no_model:
        return
    model, weights = load_model(None, ModelConfig(), allow_random_weights=True, seed=args.seed)
    runners = {name: OccupancyRunner(model, RunnerConfig(device=args.device, preprocess=name))
               for name in ("pillow", "torch")}
    for scene, sample in samples.items():
        pillow, ours = (labels_of(runners[name], sample.frames) for name in ("pillow", "torch"))
        changed = int((pillow != ours).sum())
        print(f"{scene} 256x704 {weights}: {changed} of {pillow.numel()} labels change between pillow and torch")


if __name__ == "__main__":
    main()
