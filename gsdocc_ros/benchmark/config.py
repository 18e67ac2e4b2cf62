"""What one bench measures, how its values are read from a command line, and the command that measures it again.

Torch-free, so that `gsdocc --help` builds the bench parser without importing torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from gsdocc_ros.io.sample_location import sample_data_folder

SHARED_DATA = sample_data_folder()
DEFAULT_SCENE = SHARED_DATA / "nuscenes_sample" / "scene-0061_ca9a282c"
DEFAULT_LABELS = SHARED_DATA / "occ3d_sample" / "labels.npz"
OFFICIAL_SIZES = ("256x704", "512x1408")


@dataclass(frozen=True)
class BenchConfig:
    """The settings of one bench: every field is a `gsdocc bench` option, defaults live in its parser."""

    device: str
    """cpu or cuda."""
    precision: str
    """fp32, or fp16 / bf16 autocast (pipeline.choices.PRECISION_NAMES)."""
    input_size: tuple[int, int]
    """Network input (height, width) per camera."""
    runs: int
    """Timed runs (timed calls per variant for the A/B pairs)."""
    warmup: int
    """Warm-up runs after the FLOP-counting run, which is never timed."""
    checkpoint: Path | None
    """GSD-OCC weights; None: seeded random weights."""
    seed: int
    """Seed of the random weights."""
    scene: Path
    """nuscenes_sample scene folder: calib.json and the six JPEGs."""
    labels: Path | None
    """Occ3D labels.npz the output messages are built from; None: the model's own prediction."""
    decoder: str
    """JPEG decoder of the step (ros.image_decode)."""
    preprocess: str
    """Runner preprocessing path: auto, pillow or torch."""
    splat: str
    """Runner BEV pooling: auto, indices or scatter."""
    channels_last: bool
    """Conv weights channels-last (the runner's default)."""
    compile: str | None
    """torch.compile mode of the static-shape stages, or None."""
    threads: int | None
    """torch CPU threads; None: torch's default."""
    quiet: bool
    """No progress bars."""


def command_line(config: BenchConfig) -> str:
    """The `gsdocc bench` command that reproduces this measurement (defaults written out)."""
    height, width = config.input_size
    words = [f"gsdocc bench --device {config.device} --precision {config.precision} --input-size {height}x{width}",
             f"--runs {config.runs} --warmup {config.warmup}", f"--decoder {config.decoder}"]
    words += [f"--{name} {getattr(config, name)}" for name in ("threads", "checkpoint")
              if getattr(config, name) is not None]
    words += [f"--preprocess {config.preprocess}"] * (config.preprocess != "auto")
    words += [f"--splat {config.splat}"] * (config.splat != "auto")
    words += [f"--compile {config.compile}"] * (config.compile is not None)
    words += ["--no-channels-last"] * (not config.channels_last)
    words += ["--labels predicted"] * (config.labels is None)
    return " ".join(words)


def input_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive multiples of 32 (the image backbone's stride)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x704, got {text!r}") from None
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise argparse.ArgumentTypeError(f"height and width must be positive multiples of 32, got {text!r}")
    return height, width


def positive(text: str) -> int:
    """An integer >= 1 from the command line."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def count(text: str) -> int:
    """An integer >= 0 from the command line."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value
