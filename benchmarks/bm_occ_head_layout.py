"""The occupancy head with lift_to_voxels channels-last (now) vs the broadcast's Z-outermost result (before).

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_occ_head_layout.py [--device cpu] [--runs 6]
Full-size head (re-parameterised, channels-last weights, seeded random weights and inputs), the two lifts run
alternately so that both see the same machine load; prints the median wall and process CPU seconds of each and
the largest difference of the logits.
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch
from torch import Tensor

from gsdocc_ros.model import occ_head
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.pipeline.acceleration import to_channels_last


def broadcast_lift(semantic: Tensor, height_prob: Tensor) -> Tensor:
    """The former lift_to_voxels: a broadcast product whose result has Z outermost in memory."""
    return semantic.unsqueeze(-1) * height_prob.permute(0, 2, 3, 1).unsqueeze(1)  # [B,C,Y,X,Z]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = ModelConfig()
    head = occ_head.DecoupleOccHead(cfg).eval()
    head.reparameterize()
    to_channels_last(head.to(device))
    size_x, size_y, size_z = cfg.grid.size
    bev = [torch.randn(1, 256, size_y, size_x, device=device).contiguous(memory_format=torch.channels_last)
           for _ in range(2)]  # img_bev_feat, fused_bev as the BEV encoder and fusion hand them over
    voxels = torch.randn(1, size_y, size_x, size_z, cfg.context_channels, device=device).permute(0, 4, 1, 2, 3)
    variants = {"broadcast (before)": broadcast_lift, "channels-last (now)": occ_head.lift_to_voxels}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    logits: dict[str, Tensor] = {}
    with torch.inference_mode():
        for _ in range(args.runs):
            for name, lift in variants.items():
                with mock.patch.object(occ_head, "lift_to_voxels", lift):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    logits[name] = head(*bev, voxels)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
    for name in variants:
        print(f"{name:22s} wall {statistics.median(wall[name]):6.2f} s   CPU {statistics.median(cpu[name]):6.2f} s")
    first, second = logits.values()
    print(f"max abs difference of the logits {float((first - second).abs().max()):.1e}")


if __name__ == "__main__":
    main()
