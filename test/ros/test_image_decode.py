"""Image decoding: the real nuScenes JPEGs against Pillow, PNG, raw rgb8/bgr8/mono8 with padded rows, and errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from PIL import Image as PILImage  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from gsdocc_ros.ros.image_decode import DEFAULT_JPEG_DECODER, JPEG_DECODERS, ImageDecodeError, decode_image  # noqa: E402


@pytest.fixture(scope="module")
def jpeg_files(shared_data: Path) -> list[Path]:
    """The six real camera JPEGs of scene-0061 (1600x900)."""
    files = sorted((shared_data / "nuscenes_sample" / "scene-0061_ca9a282c" / "samples").glob("CAM_*/*.jpg"))
    assert len(files) == 6
    return files


@pytest.fixture(scope="module")
def real_rgb(jpeg_files: list[Path]) -> np.ndarray:
    """A 90x160 crop of real pixels (odd sizes make padding visible)."""
    return np.asarray(PILImage.open(jpeg_files[0]).convert("RGB"))[400:490, 700:861]


def compressed(data: bytes, fmt: str) -> CompressedImage:
    """A CompressedImage holding ``data``."""
    msg = CompressedImage(format=fmt)
    msg.header.frame_id = "CAM_TEST"
    msg.data = data
    return msg


def raw(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """An Image in ``encoding`` whose rows carry ``pad`` extra bytes of junk."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 77, dtype=np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, step=padded.shape[1])
    msg.header.frame_id = "CAM_TEST"
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("decoder", JPEG_DECODERS)
def test_real_jpegs_decode_exactly_as_pillow(jpeg_files: list[Path], decoder: str) -> None:
    """Both decoders equal Pillow pixel for pixel (the official pipeline's decoder), so the default is safe."""
    for path in jpeg_files:
        data = path.read_bytes()
        expected = np.asarray(PILImage.open(path).convert("RGB"))
        for fmt in ("jpeg", "rgb8; jpeg compressed bgr8"):
            decoded = decode_image(compressed(data, fmt), jpeg_decoder=decoder)
            assert decoded.dtype == np.uint8 and decoded.shape == (900, 1600, 3)
            assert np.array_equal(decoded, expected), f"{path.name}: max diff " \
                f"{np.abs(decoded.astype(int) - expected).max()}"
    assert DEFAULT_JPEG_DECODER in JPEG_DECODERS


def test_png_colour_and_grey(real_rgb: np.ndarray) -> None:
    buffer = io.BytesIO()
    PILImage.fromarray(real_rgb).save(buffer, format="PNG")
    assert np.array_equal(decode_image(compressed(buffer.getvalue(), "bgr8; png compressed bgr8")), real_rgb)
    grey = real_rgb[:, :, 1]
    buffer = io.BytesIO()
    PILImage.fromarray(grey).save(buffer, format="PNG")
    decoded = decode_image(compressed(buffer.getvalue(), "mono8; png compressed mono8"))
    assert decoded.shape == (*grey.shape, 3) and all(np.array_equal(decoded[:, :, c], grey) for c in range(3))


@pytest.mark.parametrize("pad", [0, 3])
def test_raw_rgb8_bgr8_mono8_with_padded_rows(real_rgb: np.ndarray, pad: int) -> None:
    assert np.array_equal(decode_image(raw(real_rgb, "rgb8", pad)), real_rgb)
    assert np.array_equal(decode_image(raw(np.ascontiguousarray(real_rgb[:, :, ::-1]), "bgr8", pad)), real_rgb)
    grey = np.ascontiguousarray(real_rgb[:, :, 0])
    decoded = decode_image(raw(grey, "mono8", pad))
    assert decoded.shape == (*grey.shape, 3) and decoded.flags.c_contiguous
    assert all(np.array_equal(decoded[:, :, c], grey) for c in range(3))


def test_raw_errors_name_the_problem(real_rgb: np.ndarray) -> None:
    with pytest.raises(ImageDecodeError, match="unsupported encoding '16UC1'; supported: rgb8, bgr8, mono8"):
        decode_image(raw(real_rgb, "16UC1"))
    short = raw(real_rgb, "rgb8", pad=2)
    short.data = bytes(short.data)[:-1]
    with pytest.raises(ImageDecodeError, match=r"data holds 43649 bytes but step\*height = 485\*90 = 43650"):
        decode_image(short)
    narrow = raw(real_rgb, "rgb8")
    narrow.step = 100
    with pytest.raises(ImageDecodeError, match="step 100 is shorter than width\\*channels = 483"):
        decode_image(narrow)


@pytest.mark.parametrize("decoder", JPEG_DECODERS)
def test_compressed_errors_name_the_problem(jpeg_files: list[Path], decoder: str) -> None:
    data = jpeg_files[0].read_bytes()
    with pytest.raises(ImageDecodeError, match="corrupt JPEG"):
        decode_image(compressed(data[: len(data) // 2], "jpeg"), jpeg_decoder=decoder)
    with pytest.raises(ImageDecodeError, match="neither JPEG nor PNG"):
        decode_image(compressed(b"\x00" * 64, "jpeg"), jpeg_decoder=decoder)
    with pytest.raises(ImageDecodeError, match="format 'png' says png but the data is jpeg"):
        decode_image(compressed(data, "png"), jpeg_decoder=decoder)
    with pytest.raises(ValueError, match="jpeg_decoder: must be one of"):
        decode_image(compressed(data, "jpeg"), jpeg_decoder="opencv")
