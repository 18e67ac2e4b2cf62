"""Image messages to RGB pixels: raw sensor_msgs/Image (rgb8, bgr8, mono8) and JPEG/PNG CompressedImage.

Not a fallback: cv_bridge is not used, since for these encodings a numpy view of ``msg.data`` is what it does
too, and an importable ``cv_bridge`` may be the ROS 1 PyPI package that mis-decodes (ros2_environment.md). One
tested path on every install.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into RGB pixels; the message says why."""


try:
    import simplejpeg
except ImportError:  # Pillow alone still decodes everything, just slower
    simplejpeg = None

JPEG_DECODERS: tuple[str, ...] = ("simplejpeg", "pillow")
"""Selectable JPEG decoders. simplejpeg (libjpeg-turbo, accurate DCT and upsampling) matched Pillow exactly,
pixel for pixel, on the 12 real nuScenes JPEGs of ../shared/data (test_compat_image.py checks it), and is
about twice as fast; Pillow is what the official pre-processing used."""

DEFAULT_JPEG_DECODER = "simplejpeg" if simplejpeg is not None else "pillow"

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_to_rgb(msg: Image) -> np.ndarray:
    """uint8 (H, W, 3) RGB copy of a sensor_msgs/Image in rgb8, bgr8 or mono8, honouring row ``step`` padding."""
    where = f"Image (frame_id '{msg.header.frame_id}')"
    encoding = msg.encoding.lower()
    if encoding not in _CHANNELS:
        raise ImageDecodeError(f"{where}: unsupported encoding {msg.encoding!r}; supported: {', '.join(_CHANNELS)}")
    channels = _CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{where}: empty image {width}x{height}")
    if step < width * channels:
        raise ImageDecodeError(f"{where}: step {step} is shorter than width*channels = {width * channels}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageDecodeError(f"{where}: data holds {data.size} bytes but step*height = {step}*{height} = "
                               f"{step * height}")
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)  # drop padding
    if encoding == "bgr8":
        pixels = pixels[:, :, ::-1]
    elif encoding == "mono8":
        pixels = np.broadcast_to(pixels, (height, width, 3))
    return np.ascontiguousarray(pixels)


def _compression(msg: CompressedImage, data: bytes, where: str) -> str:
    """'jpeg' or 'png' from the data's magic bytes, checked against the format string when it names one."""
    if data.startswith(_JPEG_MAGIC):
        found = "jpeg"
    elif data.startswith(_PNG_MAGIC):
        found = "png"
    else:
        raise ImageDecodeError(f"{where}: data is neither JPEG nor PNG (first bytes {data[:8].hex()}, format "
                               f"{msg.format!r})")
    words = msg.format.lower().replace(";", " ").split()
    named = {"jpeg" if w in ("jpeg", "jpg") else w for w in words} & {"jpeg", "png"}
    if named and found not in named:
        raise ImageDecodeError(f"{where}: format {msg.format!r} says {'/'.join(sorted(named))} but the data is "
                               f"{found}")
    return found


def compressed_to_rgb(msg: CompressedImage, jpeg_decoder: str = DEFAULT_JPEG_DECODER) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a JPEG or PNG sensor_msgs/CompressedImage (format "jpeg", "bgr8; jpeg compressed
    bgr8", ...); grey images are replicated to three channels. ``jpeg_decoder`` is one of JPEG_DECODERS."""
    if jpeg_decoder not in JPEG_DECODERS:
        raise ValueError(f"jpeg_decoder: must be one of {JPEG_DECODERS}, got {jpeg_decoder!r}")
    where = f"CompressedImage (frame_id '{msg.header.frame_id}')"
    data = bytes(msg.data)
    kind = _compression(msg, data, where)
    if kind == "jpeg" and jpeg_decoder == "simplejpeg":
        if simplejpeg is None:
            raise ValueError("jpeg_decoder: simplejpeg is not installed; use 'pillow'")
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            _check_pixels(width, height, where, kind)
            return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False)
        except ImageDecodeError:
            raise
        except ValueError as error:
            raise ImageDecodeError(f"{where}: corrupt JPEG ({len(data)} bytes): {error}") from None
    try:
        with PILImage.open(io.BytesIO(data)) as image:  # reads the header only
            _check_pixels(*image.size, where, kind)
            if image.mode not in ("1", "L", "P", "RGB", "RGBA", "LA"):
                raise ImageDecodeError(f"{where}: unsupported {kind} pixel mode {image.mode!r} (8-bit only)")
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, PILImage.DecompressionBombError) as error:  # corrupt or truncated data
        raise ImageDecodeError(f"{where}: corrupt {kind.upper()} ({len(data)} bytes): {error}") from None


MAX_IMAGE_PIXELS = 64_000_000
"""Largest image decoded (64 MP): a compressed image claiming more is refused before any pixel is allocated."""


def _check_pixels(width: int, height: int, where: str, kind: str) -> None:
    """ImageDecodeError when a compressed image's header claims more than MAX_IMAGE_PIXELS."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"{where}: {kind.upper()} header claims {width}x{height} pixels, more than the "
                               f"{MAX_IMAGE_PIXELS:,} accepted; refused before decoding")


def decode_image(msg: Image | CompressedImage, jpeg_decoder: str = DEFAULT_JPEG_DECODER) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of an Image or CompressedImage message; ImageDecodeError says what is wrong."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, jpeg_decoder)
    if isinstance(msg, Image):
        return image_to_rgb(msg)
    raise TypeError(f"msg: expected sensor_msgs Image or CompressedImage, got {type(msg).__name__}")


def decode_threads(cameras: int) -> int:
    """Threads decoding one set's images side by side (both decoders release the GIL): one per camera, at most one
    per CPU. Six 1600x900 JPEGs: 59 ms one after the other, 24 ms on two threads of the 2-core test machine."""
    return max(1, min(cameras, os.cpu_count() or 1))


def decode_executor(cameras: int) -> ThreadPoolExecutor:
    """The pool of ``decode_threads(cameras)`` threads the node and the bench decode with."""
    return ThreadPoolExecutor(max_workers=decode_threads(cameras), thread_name_prefix="gsdocc-decode")
