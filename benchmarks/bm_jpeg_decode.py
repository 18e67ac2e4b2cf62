"""JPEG decoding of the 12 real nuScenes camera images: Pillow vs simplejpeg, time and pixel difference.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bm_jpeg_decode.py [--repeats 10]
Prints per decoder setting the median milliseconds per 1600x900 image and the largest pixel difference to
Pillow (the official pre-processing's decoder). image_decode.decode_image uses the accurate simplejpeg setting.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import simplejpeg
from PIL import Image

from gsdocc_ros.io.sample_location import sample_data_folder

SAMPLES = sample_data_folder() / "nuscenes_sample"


def pillow(data: bytes) -> np.ndarray:
    """Pillow's decode, as the official pipeline reads images."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def main() -> None:
    """Decode every sample JPEG with each setting; print time and max difference to Pillow."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed decodes per image and setting")
    args = parser.parse_args()
    files = sorted(SAMPLES.glob("*/samples/**/*.jpg"))
    images = [path.read_bytes() for path in files]
    references = [pillow(data) for data in images]
    settings: dict[str, Callable[[bytes], np.ndarray]] = {"pillow": pillow}
    for fastdct in (False, True):
        for fastupsample in (False, True):
            settings[f"simplejpeg fastdct={fastdct} fastupsample={fastupsample}"] = (
                lambda data, d=fastdct, u=fastupsample: simplejpeg.decode_jpeg(data, "RGB", d, u))
    print(f"{len(files)} JPEGs from {SAMPLES}")
    for name, decode in settings.items():
        times, worst = [], 0
        for data, reference in zip(images, references):
            worst = max(worst, int(np.abs(decode(data).astype(np.int16) - reference).max()))
            for _ in range(args.repeats):
                start = time.perf_counter()
                decode(data)
                times.append((time.perf_counter() - start) * 1e3)
        print(f"{name:48s} {statistics.median(times):6.1f} ms/image   max |diff| to Pillow {worst}")


if __name__ == "__main__":
    main()
