"""Property tests of every decoder of outside data: random and corrupt input either decodes to a valid result or
raises the decoder's documented error with a message, never anything else.

Decoders: image_decode.decode_image (Image, CompressedImage), conversions.camera_info_to_intrinsics, the fallback tf
buffer and conversions.transform_to_matrix, conversions.grid_from_message, and tools.grid_files.read_grid_file
(the reader of `gsdocc render` and `gsdocc eval`). Inputs are kept small so the file runs in seconds.
"""

from __future__ import annotations

import io
import math
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.time import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from gsdocc_ros.msg import SemanticVoxelGrid  # noqa: E402
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX  # noqa: E402
from gsdocc_ros.ros import image_decode, tf  # noqa: E402
from gsdocc_ros.ros.conversions import (MAX_INTRINSIC, camera_info_to_intrinsics, grid_from_message,  # noqa: E402
                                        transform_to_matrix)
from gsdocc_ros.tools import cli  # noqa: E402
from gsdocc_ros.errors import ToolError  # noqa: E402
from gsdocc_ros.io.grid_files import read_grid_file  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPO = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------------ helpers


def assert_clear(error: BaseException) -> None:
    """A refusal must say what is wrong: a non-empty, one-line message."""
    text = str(error).strip()
    assert text and "\n" not in text, repr(error)


def random_bytes(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def encoded(kind: str, mode: str, width: int, height: int, seed: int) -> bytes:
    """A small real JPEG or PNG of random pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    image = PILImage.fromarray(pixels, "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if kind == "jpeg" else "PNG")
    return buffer.getvalue()


def with_jpeg_size(data: bytes, height: int, width: int) -> bytes:
    """``data`` (a JPEG) with the frame header (SOF) claiming another size: a header that lies about the data."""
    out, i = bytearray(data), 2
    while i + 9 < len(out) and out[i] == 0xFF:
        marker, length = out[i + 1], struct.unpack(">H", out[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            out[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + length
    return bytes(out)


# ---------------------------------------------------------------------------------------- sensor_msgs/Image

SUPPORTED_RAW = {"rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1), "mono16": (2, 1),
                 "bayer_rggb8": (1, 1), "bayer_bggr8": (1, 1), "bayer_gbrg8": (1, 1), "bayer_grbg8": (1, 1),
                 "yuv422": (2, 1), "yuv422_yuy2": (2, 1), "nv21": (1, 1.5)}
"""Bytes per pixel in a row and rows of data per image row, written out here from the ROS encoding definitions."""
EVEN = {"yuv422": (2, 1), "yuv422_yuy2": (2, 1), "nv21": (2, 2)}
"""(width, height) multiples required where chroma is shared between pixels."""
ENCODINGS = [*SUPPORTED_RAW, "RGB8", "Mono8", "16UC1", "32FC1", "bayer_rggb16", "nv24", "8UC3", "jpeg", ""]


@st.composite
def raw_images(draw: st.DrawFn) -> Image:
    height, width = draw(st.integers(0, 24)), draw(st.integers(0, 24))
    encoding = draw(st.sampled_from(ENCODINGS) | st.text("abcdgmnor0123456789_", max_size=10))
    channels = draw(st.sampled_from([1, 2, 3, 4]))
    step = draw(st.sampled_from([width * channels, width * channels + 3, max(width * channels - 1, 0)])
                | st.integers(0, 2**32 - 1))
    rows = int(height * SUPPORTED_RAW.get(encoding.lower(), (1, 1))[1])
    size = draw(st.sampled_from([step * rows, step * rows + 1, max(step * rows - 1, 0)]) | st.integers(0, 3000))
    size = min(size, 100_000)
    return Image(height=height, width=width, encoding=encoding, step=step,
                 is_bigendian=draw(st.integers(0, 1)), data=random_bytes(draw(st.integers(0, 2**16)), size))


@FUZZ
@given(raw_images())
def test_image_decodes_exactly_the_well_formed_messages(msg: Image) -> None:
    encoding = msg.encoding.lower()
    pixel_bytes, row_factor = SUPPORTED_RAW.get(encoding, (None, 1))
    even_w, even_h = EVEN.get(encoding, (1, 1))
    well_formed = (pixel_bytes is not None and msg.height > 0 and msg.width > 0 and msg.step >= msg.width * pixel_bytes
                   and msg.width % even_w == 0 and msg.height % even_h == 0
                   and len(msg.data) == msg.step * int(msg.height * row_factor))
    try:
        rgb = image_decode.decode_image(msg)
    except image_decode.ImageDecodeError as error:
        assert not well_formed, f"a well-formed image was refused: {error}"
        assert_clear(error)
        return
    assert well_formed
    assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8
    if encoding not in ("rgb8", "bgr8", "mono8"):
        return  # the others are checked against colour references in test_image_decode.py
    channels = pixel_bytes
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :msg.width * channels]
    first = rows[:, :channels].reshape(msg.height, channels)  # first pixel of each row, in the message's order
    expected = {"rgb8": first, "bgr8": first[:, ::-1], "mono8": np.repeat(first, 3, axis=1)}[encoding]
    np.testing.assert_array_equal(rgb[:, 0], expected)


# ------------------------------------------------------------------------------- sensor_msgs/CompressedImage

FORMATS = ["jpeg", "png", "jpg", "JPEG", "rgb8; jpeg compressed bgr8", "bgr8; png compressed", "", "webp",
           "16UC1; compressedDepth png", "mono8; png compressed mono8"]


@st.composite
def compressed_images(draw: st.DrawFn) -> CompressedImage:
    kind = draw(st.sampled_from(["jpeg", "png", "random"]))
    seed = draw(st.integers(0, 2**16))
    if kind == "random":
        data = random_bytes(seed, draw(st.integers(0, 600)))
        if draw(st.booleans()):  # random bytes behind a real magic number
            data = draw(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"])) + data
    else:
        modes = ["RGB", "L"] if kind == "jpeg" else ["RGB", "L", "RGBA", "P", "LA", "1", "I;16", "I"]
        data = encoded(kind, draw(st.sampled_from(modes)), draw(st.integers(1, 24)), draw(st.integers(1, 24)), seed)
        damage = draw(st.sampled_from(["none", "truncate", "flip", "resize"]))
        if damage == "truncate":
            data = data[:draw(st.integers(0, len(data) - 1))]
        elif damage == "flip":
            for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
                data = data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]
        elif damage == "resize" and kind == "jpeg":  # the header claims up to 2000x2000: small enough to test here
            data = with_jpeg_size(data, draw(st.integers(0, 2000)), draw(st.integers(0, 2000)))
    fmt = draw(st.sampled_from(FORMATS) | st.text("abcegjmnoprsdz;0123456789 ", max_size=20))
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


@FUZZ
@given(compressed_images(), st.sampled_from(image_decode.JPEG_DECODERS))
def test_compressed_image_decodes_or_says_why(msg: CompressedImage, decoder: str) -> None:
    assume(decoder == "pillow" or image_decode.simplejpeg is not None)
    try:
        rgb = image_decode.decode_image(msg, decoder)
    except image_decode.ImageDecodeError as error:
        assert_clear(error)
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8 and rgb.size > 0


BOMB_DECODE = r"""
import resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a runaway allocation fails here, not on the machine
from sensor_msgs.msg import CompressedImage
from gsdocc_ros.ros import image_decode
msg = CompressedImage(format=sys.argv[2])
msg.data = open(sys.argv[1], "rb").read()
try:
    image_decode.decode_image(msg, sys.argv[3])
except image_decode.ImageDecodeError as error:
    print("refused:", error)
"""


def _png_of_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("L", (width, height)).save(buffer, "PNG")  # all zeros: a few hundred kB however large
    return buffer.getvalue()


@pytest.mark.parametrize("case", ["jpeg header 60000x60000", "png 20000x20000"])
def test_images_claiming_huge_sizes_are_refused_before_decoding(case: str, tmp_path: Path, python: str,
                                                                  shared_data: Path) -> None:
    """A few hundred bytes claiming gigapixels must not make the node allocate gigabytes (run in a child process
    with a 2 GiB address-space limit, so a failure cannot take the machine's memory)."""
    if case.startswith("jpeg"):
        real = (shared_data / "nuscenes_sample" / "scene-0003_fd842039" / "samples" / "imgs" / "CAM_FRONT.jpg")
        data, fmt, decoders = with_jpeg_size(real.read_bytes(), 60000, 60000), "jpeg", image_decode.JPEG_DECODERS
    else:
        data, fmt, decoders = _png_of_size(20000, 20000), "png", ("pillow",)
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    for decoder in decoders:
        run = subprocess.run([python, "-c", BOMB_DECODE, str(path), fmt, decoder], capture_output=True, text=True,
                             timeout=120, cwd=REPO)
        assert run.returncode == 0 and run.stdout.startswith("refused:"), (decoder, run.stdout, run.stderr[-500:])


# ------------------------------------------------------------------------------------- sensor_msgs/CameraInfo

finite_or_not = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e7])


@st.composite
def camera_infos(draw: st.DrawFn) -> CameraInfo:
    width = draw(st.sampled_from([0, 1, 1600, 2**32 - 1]) | st.integers(0, 5000))
    height = draw(st.sampled_from([0, 1, 900, 2**32 - 1]) | st.integers(0, 5000))
    if draw(st.booleans()):  # a plausible pinhole K, with the odd field spoiled
        fx, fy = draw(finite_or_not | st.floats(1, 5000)), draw(finite_or_not | st.floats(1, 5000))
        cx, cy = draw(finite_or_not | st.floats(-10, 5010)), draw(finite_or_not | st.floats(-10, 5010))
        k = [fx, draw(st.sampled_from([0.0, 0.5]) | finite_or_not), cx, 0.0, fy, cy, 0.0, 0.0,
             draw(st.sampled_from([1.0, 0.0, 2.0]))]
    else:
        k = draw(st.lists(finite_or_not, min_size=9, max_size=9))
    msg = CameraInfo(width=width, height=height)
    msg.k = [float(v) for v in k]
    return msg


@FUZZ
@given(camera_infos())
@example(CameraInfo())  # all zeros: never received / unset
def test_camera_info_gives_a_usable_k_or_says_why(msg: CameraInfo) -> None:
    try:
        k, (height, width) = camera_info_to_intrinsics(msg)
    except ValueError as error:
        assert_clear(error)
        return
    assert k.shape == (3, 3) and np.all(np.isfinite(k)) and np.abs(k).max() <= MAX_INTRINSIC
    assert k[0, 0] > 0 and k[1, 1] > 0 and k[2, 2] == 1 and not k[2, :2].any() and k[1, 0] == 0
    assert (height, width) == (msg.height, msg.width) and 0 <= k[0, 2] <= width and 0 <= k[1, 2] <= height


# -------------------------------------------------------------------------------------------------- transforms

values = st.floats(allow_nan=True, allow_infinity=True, width=64)
moderate = st.floats(-1e6, 1e6) | st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def transforms(draw: st.DrawFn, translation: st.SearchStrategy[float] = values) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id = draw(st.sampled_from(["map", "base_link", ""]))
    msg.child_frame_id = draw(st.sampled_from(["base_link", "CAM_FRONT", ""]))
    msg.header.stamp.sec, msg.header.stamp.nanosec = draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 10**9 - 1))
    t = msg.transform.translation
    t.x, t.y, t.z = (draw(translation) for _ in range(3))
    if draw(st.booleans()):  # a unit quaternion, maybe nudged off unit norm
        q = np.asarray(draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4)))
        assume(np.linalg.norm(q) > 0.1)
        q = q / np.linalg.norm(q) * draw(st.sampled_from([1.0, 1.0 + 1e-5, 1.01, 0.5, 2.0]))
    else:
        q = draw(st.lists(values, min_size=4, max_size=4))
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def assert_rigid(matrix: np.ndarray) -> None:
    assert matrix.shape == (4, 4) and np.all(np.isfinite(matrix))
    np.testing.assert_allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-9)
    np.testing.assert_array_equal(matrix[3], [0, 0, 0, 1])


@FUZZ
@given(transforms())
def test_transform_to_matrix_is_rigid_or_refused(msg: TransformStamped) -> None:
    try:
        matrix = transform_to_matrix(msg)
    except ValueError as error:
        assert_clear(error)
        return
    assert_rigid(matrix)


@FUZZ
@given(transforms(moderate), st.booleans())
def test_fallback_tf_buffer_stores_only_usable_transforms(msg: TransformStamped, static: bool) -> None:
    buffer = tf.FallbackBuffer()
    store = buffer.set_transform_static if static else buffer.set_transform
    problem = tf.transform_problem(msg)
    assert store(msg, "fuzz") == (problem is None)  # as tf2: ignored (logged), never raised
    if problem is not None:
        assert_clear(problem)
        return
    looked_up = buffer.lookup_transform(msg.header.frame_id, msg.child_frame_id, Time(nanoseconds=0))
    assert_rigid(transform_to_matrix(looked_up))


# ------------------------------------------------------------------------------- gsdocc_ros/SemanticVoxelGrid

@st.composite
def voxel_grids(draw: st.DrawFn) -> SemanticVoxelGrid:
    size = [draw(st.sampled_from([0, 1, 2, 3, 2**32 - 1]) | st.integers(0, 4)) for _ in range(3)]
    count = math.prod(size) if max(size) < 100 else 8
    msg = SemanticVoxelGrid(size_x=size[0], size_y=size[1], size_z=size[2])
    msg.voxel_size = draw(st.sampled_from([0.4, 0.0, -0.4, math.nan, math.inf, 1e-30]))
    msg.origin.orientation.w = draw(st.sampled_from([1.0, 0.0, 0.7071]))
    msg.origin.position.x = draw(st.sampled_from([-40.0, math.nan, math.inf]))
    msg.class_names = draw(st.sampled_from([list(CLASS_NAMES), list(CLASS_NAMES[:-1]), [],
                                            list(reversed(CLASS_NAMES))]))
    msg.free_index = draw(st.sampled_from([FREE_INDEX, 0, 255]))
    seed = draw(st.integers(0, 2**16))
    for field, optional in (("labels", False), ("confidence", True), ("camera_mask", True)):
        n = draw(st.sampled_from([count, count + 1, max(count - 1, 0)] + ([0] if optional else []))
                 | st.integers(0, 70))
        data = random_bytes(seed, n)
        high = {"labels": len(CLASS_NAMES) + 2, "camera_mask": 3, "confidence": 256}[field]
        setattr(msg, field, (np.frombuffer(data, np.uint8) % high).astype(np.uint8).tobytes()
                if draw(st.booleans()) else data)
    return msg


@FUZZ
@given(voxel_grids())
def test_voxel_grid_message_sizes_must_agree_with_its_data(msg: SemanticVoxelGrid) -> None:
    try:
        grid = grid_from_message(msg)
    except ValueError as error:
        assert_clear(error)
        return
    size = (msg.size_x, msg.size_y, msg.size_z)
    assert grid.labels.shape == size and grid.labels.size == len(msg.labels)
    assert int(grid.labels.max()) < len(CLASS_NAMES)
    for optional in ("confidence", "camera_mask"):
        assert (getattr(grid, optional) is None) == (len(getattr(msg, optional)) == 0)


# --------------------------------------------------------------------------------- grid files (render, eval)

SHAPE = (4, 3, 2)  # read_grid_file checks any expected shape; a small one keeps the fuzzing fast


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


GOOD = _npz(semantics=np.arange(24, dtype=np.uint8).reshape(SHAPE) % 18,
            mask_camera=np.ones(SHAPE, np.uint8))


@st.composite
def grid_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["good", "truncated", "flipped", "random", "plain npy", "keys"]))
    if kind == "good":
        return GOOD
    if kind == "truncated":
        return GOOD[:draw(st.integers(0, len(GOOD) - 1))]
    if kind == "flipped":
        position = draw(st.integers(0, len(GOOD) - 1))
        return GOOD[:position] + bytes([GOOD[position] ^ draw(st.integers(1, 255))]) + GOOD[position + 1:]
    if kind == "random":
        return random_bytes(draw(st.integers(0, 2**16)), draw(st.integers(0, 300)))
    if kind == "plain npy":
        return _npy(np.zeros(SHAPE, np.uint8))
    key = draw(st.sampled_from(["semantics", "pred", "labels"]))
    dtype = draw(st.sampled_from([np.uint8, np.int64, np.float32, object]))
    shape = draw(st.sampled_from([SHAPE, (4, 3), (0,), (4, 3, 3)]))
    array = np.zeros(shape, dtype) if dtype is not object else np.array([None, {"a": 1}], dtype=object)
    extra = {"mask_camera": np.full(SHAPE, draw(st.sampled_from([0, 1, 2])), np.uint8)} if draw(st.booleans()) else {}
    if dtype is np.uint8 and shape == SHAPE:
        array[:] = draw(st.sampled_from([0, 17, 18, 255]))
    buffer = io.BytesIO()
    np.savez(buffer, **{key: array}, **extra)  # object arrays are pickled inside: must be refused, never unpickled
    return buffer.getvalue()


def check_grid_file(tmp_path: Path, data: bytes) -> None:
    """``data`` as a grid file: read as a valid grid, or refused with a one-line ToolError naming the file."""
    path = tmp_path / "grid.npz"
    path.write_bytes(data)
    try:
        grid = read_grid_file(path, shape=SHAPE)
    except ToolError as error:
        assert_clear(error)
        assert str(path) in str(error)
        return
    assert grid.labels.shape == SHAPE and grid.labels.dtype == np.uint8 and int(grid.labels.max()) < len(CLASS_NAMES)
    assert all(mask.dtype == bool and mask.shape == SHAPE for mask in grid.masks.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grid_files())
@example(GOOD[: len(GOOD) // 2])
def test_grid_file_reads_or_refuses_with_a_tool_error(tmp_path: Path, data: bytes) -> None:
    check_grid_file(tmp_path, data)


def header_damage(kind: str) -> bytes:
    """GOOD with one zip header field as a damaged or hostile file may have it (the fuzzing rarely hits these)."""
    data = bytearray(GOOD)
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")  # first member: semantics.npy
    if kind == "encrypted":  # central directory, general-purpose flag bit 0
        data[central + 8] |= 0x01
    elif kind == "patched":  # central directory, flag bit 5: compressed patched data
        data[central + 8] |= 0x20
    elif kind == "version":  # central directory, version needed to extract: 10.9
        data[central + 6] = 109
    else:  # a line break in the member name, in both headers (same length, so every offset holds)
        for name in (local + 30, central + 46):
            data[name:name + 13] = b"sem\nntics.npy"
    return bytes(data)


@pytest.mark.parametrize("kind", ["encrypted", "patched", "version", "line break in a name"])
def test_grid_file_with_hostile_zip_headers_is_refused(tmp_path: Path, kind: str) -> None:
    check_grid_file(tmp_path, header_damage(kind))


def test_the_good_grid_file_reads() -> None:
    """The fuzzing above starts from a file the reader accepts (else it would only test refusals)."""
    with zipfile.ZipFile(io.BytesIO(GOOD)) as archive:
        assert sorted(archive.namelist()) == ["mask_camera.npy", "semantics.npy"]


@pytest.mark.parametrize("verb", ["render", "eval"])
def test_tools_refuse_a_truncated_grid_file_in_one_line(verb: str, tmp_path: Path, shared_data: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    real = (shared_data / "occ3d_sample" / "labels.npz").read_bytes()
    if verb == "render":
        bad = tmp_path / "labels.npz"
        bad.write_bytes(real[: len(real) // 2])
        out = tmp_path / "grid.png"
        args = ["render", str(bad), "--out", str(out)]
    else:  # a prediction folder with one truncated file beside a ground-truth tree
        gt = tmp_path / "gt" / "scene-0000" / "token0"
        gt.mkdir(parents=True)
        (gt / "labels.npz").write_bytes(real)
        (tmp_path / "pred").mkdir()
        bad = tmp_path / "pred" / "token0.npz"
        bad.write_bytes(real[: len(real) // 2])
        out = tmp_path / "out"
        args = ["eval", "score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(out)]
    code = cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"gsdocc {verb}: error: {bad}"), err
    assert not out.exists() or not any(out.iterdir())
