"""Image decoding: the real nuScenes JPEGs against Pillow, PNG, every raw encoding against a reference made here
(numpy colour formulas on real pixels, no OpenCV), padded rows, and errors."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

from PIL import Image as PILImage  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from gsdocc_ros.ros.image_decode import (DEFAULT_JPEG_DECODER, JPEG_DECODERS, RAW_FORMATS, ImageDecodeError,  # noqa: E402
                                         decode_image)


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


def test_palette_png_with_transparency_gives_its_colours_without_a_warning(real_rgb: np.ndarray) -> None:
    """A palette PNG whose transparency is a byte string decodes to its palette colours (alpha dropped), and Pillow's
    "convert to RGBA first" warning is not raised."""
    palette = PILImage.fromarray(real_rgb[:64, :64]).quantize(16)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=bytes([0, 128] + [255] * 14))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = decode_image(compressed(buffer.getvalue(), "rgb8; png compressed rgb8"))
    assert np.array_equal(decoded, np.asarray(palette.convert("RGBA"))[:, :, :3])


@pytest.mark.parametrize("pad", [0, 3])
def test_raw_rgb8_bgr8_mono8_with_padded_rows(real_rgb: np.ndarray, pad: int) -> None:
    assert np.array_equal(decode_image(raw(real_rgb, "rgb8", pad)), real_rgb)
    assert np.array_equal(decode_image(raw(np.ascontiguousarray(real_rgb[:, :, ::-1]), "bgr8", pad)), real_rgb)
    grey = np.ascontiguousarray(real_rgb[:, :, 0])
    decoded = decode_image(raw(grey, "mono8", pad))
    assert decoded.shape == (*grey.shape, 3) and decoded.flags.c_contiguous
    assert all(np.array_equal(decoded[:, :, c], grey) for c in range(3))


def raw_bytes(data: np.ndarray, encoding: str, width: int, height: int, pad: int = 0, big: bool = False) -> Image:
    """An Image of ``encoding`` whose rows are the rows of ``data`` (2-D uint8 or uint16) plus ``pad`` junk bytes."""
    if data.dtype == np.uint16:
        data = data.astype(">u2" if big else "<u2").view(np.uint8)
    rows = data.reshape(data.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 77, dtype=np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, step=padded.shape[1], is_bigendian=int(big))
    msg.header.frame_id = "CAM_TEST"
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 5])
def test_rgba8_bgra8_drop_alpha(real_rgb: np.ndarray, pad: int) -> None:
    alpha = np.random.default_rng(0).integers(0, 256, real_rgb.shape[:2], dtype=np.uint8)[:, :, None]
    h, w = real_rgb.shape[:2]
    assert np.array_equal(decode_image(raw_bytes(np.concatenate([real_rgb, alpha], 2), "rgba8", w, h, pad)), real_rgb)
    bgra = np.concatenate([real_rgb[:, :, ::-1], alpha], 2)
    assert np.array_equal(decode_image(raw_bytes(bgra, "bgra8", w, h, pad)), real_rgb)


@pytest.mark.parametrize("big", [False, True])
def test_mono16_scales_by_255_over_65535_in_either_byte_order(big: bool) -> None:
    values = np.random.default_rng(1).integers(0, 65536, (31, 47), dtype=np.uint16)
    values[0, :4] = (0, 65535, 257 * 100 + 128, 257 * 100 + 129)  # the ends, and both sides of a rounding edge
    expected = np.floor(values / 257.0 + 0.5).astype(np.uint8)  # 255/65535 = 1/257, to nearest (no exact ties)
    decoded = decode_image(raw_bytes(values, "mono16", 47, 31, pad=3, big=big))
    assert decoded.shape == (31, 47, 3) and decoded[0, :4, 0].tolist() == [0, 255, 100, 101]
    assert all(np.array_equal(decoded[:, :, c], expected) for c in range(3))


def blocky(real_rgb: np.ndarray, block: int = 8) -> np.ndarray:
    """Real colours made constant over block x block squares (demosaicing is exact inside such a square)."""
    h, w = (real_rgb.shape[0] // block) * block, (real_rgb.shape[1] // block) * block
    coarse = real_rgb[:h:block, :w:block]
    return np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The Bayer sensor image of ``rgb``: pattern names the colours of the top-left 2x2 block, row by row."""
    out = np.empty(rgb.shape[:2], dtype=np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(colour)]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_scene(real_rgb: np.ndarray, pattern: str) -> None:
    scene = blocky(real_rgb)
    h, w = scene.shape[:2]
    sensor = mosaic(scene, pattern)
    decoded = decode_image(raw_bytes(sensor, f"bayer_{pattern}8", w, h, pad=6))
    assert decoded.shape == scene.shape
    away = lambda size: (np.arange(size) % 8 >= 2) & (np.arange(size) % 8 <= 5)  # noqa: E731 - 2 px from an edge
    inside = away(h)[:, None] & away(w)[None, :]  # every neighbour a demosaic reads shares the colour
    assert inside.sum() > 0.2 * h * w
    np.testing.assert_array_equal(decoded[inside], scene[inside])
    for k, colour in enumerate(pattern):  # each photosite keeps the value it measured
        dy, dx = divmod(k, 2)
        sites = decoded[dy:h - 1:2, dx:w - 1:2, "rgb".index(colour)][1:, 1:]
        np.testing.assert_array_equal(sites, sensor[dy:h - 1:2, dx:w - 1:2][1:, 1:])


def rgb_to_yuv601(rgb: np.ndarray) -> np.ndarray:
    """Float (H, W, 3) Y, U, V of uint8 RGB: BT.601 with Y in 16..235 and chroma in 16..240."""
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return np.stack([y, u, v], axis=-1)


def yuv601_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """uint8 RGB of BT.601 limited-range Y, U, V (broadcast to one shape), the inverse of rgb_to_yuv601."""
    y, u, v = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(y, u, v))
    c, d, e = 255 / 219 * (y - 16), 255 / 224 * (u - 128), 255 / 224 * (v - 128)
    r = c + 1.402 * e
    g = c - 0.344136 * d - 0.714136 * e
    b = c + 1.772 * d
    return np.clip(np.round(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def yuv_planes(real_rgb: np.ndarray, shape: tuple[int, int], sub_y: int) -> tuple[np.ndarray, ...]:
    """uint8 Y (full size), U and V (averaged over 2 x sub_y pixels) of a real crop of ``shape``."""
    yuv = rgb_to_yuv601(real_rgb[:shape[0], :shape[1]])
    chroma = yuv[..., 1:].reshape(shape[0] // sub_y, sub_y, shape[1] // 2, 2, 2).mean(axis=(1, 3))
    as_u8 = lambda a: np.clip(np.round(a), 0, 255).astype(np.uint8)  # noqa: E731
    return as_u8(yuv[..., 0]), as_u8(chroma[..., 0]), as_u8(chroma[..., 1])


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_packed_yuv422_against_bt601(real_rgb: np.ndarray, encoding: str) -> None:
    h, w = 90, 160
    y, u, v = yuv_planes(real_rgb, (h, w), sub_y=1)  # u, v: (h, w/2)
    packed = np.empty((h, w, 2), dtype=np.uint8)  # per pixel pair: U Y0 V Y1 (UYVY) or Y0 U Y1 V (YUYV)
    luma, chroma = (1, 0) if encoding == "yuv422" else (0, 1)
    packed[:, :, luma] = y
    packed[:, 0::2, chroma], packed[:, 1::2, chroma] = u, v
    expected = yuv601_to_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    decoded = decode_image(raw_bytes(packed, encoding, w, h, pad=4))
    assert np.abs(decoded.astype(int) - expected).max() <= 1  # fixed point against float
    assert np.abs(decoded.astype(int) - real_rgb[:h, :w]).mean() < 4  # and it is the picture


def test_nv21_against_bt601(real_rgb: np.ndarray) -> None:
    h, w = 90, 160
    y, u, v = yuv_planes(real_rgb, (h, w), sub_y=2)  # u, v: (h/2, w/2)
    vu = np.stack([v, u], axis=-1).reshape(h // 2, w)  # interleaved V U
    expected = yuv601_to_rgb(y, np.repeat(np.repeat(u, 2, 0), 2, 1), np.repeat(np.repeat(v, 2, 0), 2, 1))
    decoded = decode_image(raw_bytes(np.concatenate([y, vu]), "nv21", w, h, pad=2))
    assert np.abs(decoded.astype(int) - expected).max() <= 1
    assert np.abs(decoded.astype(int) - real_rgb[:h, :w]).mean() < 6


def test_every_raw_encoding_is_tested() -> None:
    """A new entry in RAW_FORMATS needs its own reference test in this file."""
    tested = {"rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
              "bayer_grbg8", "yuv422", "yuv422_yuy2", "nv21"}
    assert set(RAW_FORMATS) == tested


def test_raw_errors_name_the_problem(real_rgb: np.ndarray) -> None:
    with pytest.raises(ImageDecodeError, match="unsupported encoding '16UC1'; supported: rgb8, bgr8, rgba8"):
        decode_image(raw(real_rgb, "16UC1"))
    short = raw(real_rgb, "rgb8", pad=2)
    short.data = bytes(short.data)[:-1]
    with pytest.raises(ImageDecodeError, match=r"data holds 43649 bytes but step\*rows = 485\*90 = 43650"):
        decode_image(short)
    narrow = raw(real_rgb, "rgb8")
    narrow.step = 100
    with pytest.raises(ImageDecodeError, match="step 100 is shorter than width\\*bytes per pixel = 483"):
        decode_image(narrow)
    odd = raw_bytes(np.zeros((4, 5, 2), np.uint8), "yuv422", 5, 4)
    with pytest.raises(ImageDecodeError, match="yuv422 needs an even width, got 5"):
        decode_image(odd)
    nv21 = raw_bytes(np.zeros((6, 4), np.uint8), "nv21", 4, 4)
    nv21.data = bytes(nv21.data)[:-4]
    with pytest.raises(ImageDecodeError, match=r"data holds 20 bytes but step\*rows = 4\*6 = 24"):
        decode_image(nv21)
    with pytest.raises(ImageDecodeError, match="empty image 0x4"):
        decode_image(raw_bytes(np.zeros((4, 0), np.uint8), "mono8", 0, 4))


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
