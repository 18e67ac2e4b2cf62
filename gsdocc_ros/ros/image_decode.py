"""Image messages to RGB pixels: raw sensor_msgs/Image in the encodings camera drivers publish, JPEG/PNG.

Raw images: the genuine ROS 2 ``cv_bridge`` where it imports and passes a self-check (the ROS 1 ``cv-bridge`` from
PyPI imports too but mis-decodes 16-bit images, ros2_environment.md), else OpenCV (opencv-python-headless) with the
same conversion codes; ``raw_backend`` is the one place that decides, per encoding. Compressed images: simplejpeg
or Pillow, on every install.
"""

from __future__ import annotations

import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

from gsdocc_ros.ros.backends import FALLBACK, genuine


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

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class RawFormat:
    """How one raw encoding lies in ``msg.data`` and which OpenCV conversion turns it into RGB."""

    values: int
    """Values per pixel in a row (2 for packed 4:2:2, where two pixels share their U and V)."""
    bytes_per_value: int
    """1 for 8-bit encodings, 2 for 16-bit ones (byte order from ``is_bigendian``)."""
    to_rgb: int | None
    """cv2.cvtColor code to RGB, None when the values are RGB already."""
    row_factor: float = 1.0
    """Rows of data per image row: 1.5 for NV21 (a full-size Y plane, then a half-size interleaved VU plane)."""
    even: tuple[bool, bool] = (False, False)
    """Whether (width, height) must be even (chroma shared by pixel pairs or 2x2 blocks)."""


RAW_FORMATS: dict[str, RawFormat] = {
    "rgb8": RawFormat(3, 1, None),
    "bgr8": RawFormat(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": RawFormat(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": RawFormat(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": RawFormat(1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": RawFormat(1, 2, cv2.COLOR_GRAY2RGB),
    # OpenCV names a Bayer pattern by the 2x2 block starting at the second row and column, hence the shift
    "bayer_rggb8": RawFormat(1, 1, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": RawFormat(1, 1, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": RawFormat(1, 1, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": RawFormat(1, 1, cv2.COLOR_BayerGB2RGB),
    "yuv422": RawFormat(2, 1, cv2.COLOR_YUV2RGB_UYVY, even=(True, False)),
    "yuv422_yuy2": RawFormat(2, 1, cv2.COLOR_YUV2RGB_YUY2, even=(True, False)),
    "nv21": RawFormat(1, 1, cv2.COLOR_YUV2RGB_NV21, row_factor=1.5, even=(True, True)),
}
"""Every raw encoding decoded, by its sensor_msgs/image_encodings name (NV12 has no ROS encoding name)."""

CV_BRIDGE_ENCODINGS = frozenset(name for name in RAW_FORMATS if name not in ("yuv422_yuy2", "nv21"))
"""Encodings every ROS 2 distribution's cv_bridge converts to rgb8 (YUY2 and NV21 came later, so ours decode them)."""


def _checked_bridge() -> Any | None:
    """A genuine ROS 2 CvBridge, or None when absent, forced off, or failing the 16-bit self-check."""
    module = genuine("cv_bridge")
    if module is None:
        return None
    try:
        bridge = module.CvBridge()
        probe = Image(height=1, width=1, encoding="mono16", step=2, is_bigendian=int(sys.byteorder == "big"),
                      data=np.array([258], dtype=np.uint16).tobytes())
        ok = bridge.imgmsg_to_cv2(probe, "passthrough").reshape(-1).tolist() == [258]
    except Exception:  # a cv_bridge that cannot even decode one pixel is not the one the design means
        return None
    return bridge if ok else None


_BRIDGE = _checked_bridge()

RAW_BACKEND = "cv_bridge" if _BRIDGE is not None else f"opencv ({FALLBACK})"
"""Which library converts raw images in this process (for the start-up log)."""


def raw_backend(encoding: str) -> str:
    """'cv_bridge' when the genuine bridge converts ``encoding`` here, else 'opencv'; the one place that decides."""
    return "cv_bridge" if _BRIDGE is not None and encoding in CV_BRIDGE_ENCODINGS else "opencv"


def raw_values(msg: Image, fmt: RawFormat, where: str) -> np.ndarray:
    """The message's values as an (rows, width, values) uint8/uint16 array in native byte order, padding dropped."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{where}: empty image {width}x{height}")
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"{where}: {width}x{height} is more than the {MAX_IMAGE_PIXELS:,} pixels accepted")
    for size, must_be_even, axis in ((width, fmt.even[0], "width"), (height, fmt.even[1], "height")):
        if must_be_even and size % 2:
            raise ImageDecodeError(f"{where}: {msg.encoding} needs an even {axis}, got {size}")
    row_bytes = width * fmt.values * fmt.bytes_per_value
    if step < row_bytes:
        raise ImageDecodeError(f"{where}: step {step} is shorter than width*bytes per pixel = {row_bytes}")
    rows = int(height * fmt.row_factor)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * rows:
        raise ImageDecodeError(f"{where}: data holds {data.size} bytes but step*rows = {step}*{rows} = {step * rows}")
    packed = data.reshape(rows, step)[:, :row_bytes]  # drop the row padding
    if fmt.bytes_per_value == 1:
        return packed.reshape(rows, width, fmt.values)
    big = bool(msg.is_bigendian)
    values = np.ascontiguousarray(packed).view(">u2" if big else "<u2").astype(np.uint16)  # native order
    return values.reshape(rows, width, fmt.values)


def image_to_rgb(msg: Image) -> np.ndarray:
    """uint8 (H, W, 3) RGB copy of a raw sensor_msgs/Image in one of RAW_FORMATS, honouring row ``step`` padding.

    16-bit images are scaled to 8 bits by 255/65535, as cv_bridge does; Bayer images are demosaiced bilinearly;
    YUV is BT.601 with Y in 16..235 (OpenCV's and cv_bridge's conversion).
    """
    where = f"Image (frame_id '{msg.header.frame_id}')"
    encoding = msg.encoding.lower()
    fmt = RAW_FORMATS.get(encoding)
    if fmt is None:
        raise ImageDecodeError(f"{where}: unsupported encoding {msg.encoding!r}; supported: {', '.join(RAW_FORMATS)}")
    values = raw_values(msg, fmt, where)  # also checks sizes for the bridge, so both refuse the same messages
    if raw_backend(msg.encoding) == "cv_bridge":
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, "rgb8"))
        except Exception as error:  # CvBridgeError, or OpenCV's error inside it
            raise ImageDecodeError(f"{where}: cv_bridge refused it: {str(error).splitlines()[0]}") from None
    planar = values[:, :, 0] if fmt.values == 1 else values  # OpenCV takes one-value images as 2-D
    if fmt.bytes_per_value == 2:
        planar = cv2.convertScaleAbs(planar, alpha=255.0 / 65535.0)  # to nearest, as cv_bridge's convertTo
    if fmt.to_rgb is None:
        return np.ascontiguousarray(planar)
    return cv2.cvtColor(np.ascontiguousarray(planar), fmt.to_rgb)


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
            if image.mode == "P" and "transparency" in image.info:  # via RGBA, the way Pillow asks: same colours
                return np.asarray(image.convert("RGBA").convert("RGB"))
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
