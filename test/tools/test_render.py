"""`gsdocc render`: PNG size, top-down pixels in the class colour of known columns, the caption saying what the
grid shows, refusals."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsdocc_ros.io.grid_files import GridInfo, read_grid_file, write_grid_file
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_COLORS, OCC3D_GEOMETRY
from gsdocc_ros.tools import cli
from gsdocc_ros.tools import render as render_tool
from gsdocc_ros.viz import render


@pytest.fixture(scope="module")
def occ3d(shared_data: Path) -> dict[str, np.ndarray]:
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as npz:
        return {key: npz[key] for key in npz.files}


def top_label_slow(labels: np.ndarray, ix: int, iy: int) -> int:
    """Slow twin of the top-down rule: scan the column from the top for the first non-free voxel."""
    for iz in reversed(range(labels.shape[2])):
        if labels[ix, iy, iz] != FREE_INDEX:
            return int(labels[ix, iy, iz])
    return FREE_INDEX


def top_labels_by_sweep(labels: np.ndarray) -> np.ndarray:
    """Second twin, vectorised: sweep z upwards, each non-free voxel overwriting the column's label."""
    top = np.full(labels.shape[:2], FREE_INDEX, labels.dtype)
    for iz in range(labels.shape[2]):
        top = np.where(labels[:, :, iz] != FREE_INDEX, labels[:, :, iz], top)
    return top


def uniform_columns(labels: np.ndarray, per_class: int = 3) -> list[tuple[int, int, int]]:
    """(ix, iy, class) of columns whose 3x3 neighbourhood has the same top class, a few per class present."""
    top = top_labels_by_sweep(labels)
    same = np.ones((198, 198), bool)
    for dx in range(3):
        for dy in range(3):
            same &= top[dx:dx + 198, dy:dy + 198] == top[1:-1, 1:-1]
    out = []
    for c in np.unique(top):
        where = np.argwhere(same & (top[1:-1, 1:-1] == c)) + 1  # (K, 2) interior columns
        if len(where):
            picks = where[np.linspace(0, len(where) - 1, per_class).astype(int)]
            out += [(int(ix), int(iy), int(c)) for ix, iy in picks]
    return out


def bev_pixels(fig, height: int, columns: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """(row, col) in the saved PNG of the centre of each column (ix, iy, _) on the figure's top-down axes."""
    fig.draw_without_rendering()  # fixes the equal-aspect axes box, as saving does
    (bev,) = [ax for ax in fig.axes if ax.get_label() == render.BEV_LABEL]
    centres = OCC3D_GEOMETRY.centres(np.array([(ix, iy, 0) for ix, iy, _ in columns]))  # (K, 3)
    display = bev.transData.transform(centres[:, [1, 0]])  # the axes plot y horizontally, x vertically
    return [(int(height - py), int(px)) for px, py in display]


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"))


def test_bev_image_orientation_and_the_slow_twin(occ3d: dict[str, np.ndarray]) -> None:
    labels = occ3d["semantics"]
    image = render.bev_image(labels)
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8
    rng = np.random.default_rng(1)
    for ix, iy in rng.integers(0, 200, size=(300, 2)):
        # Forward (+x) is up, left (+y) is left: voxel (ix, iy) sits at row 199 - ix, column 199 - iy.
        assert np.array_equal(image[199 - ix, 199 - iy], OCC3D_COLORS[top_label_slow(labels, ix, iy)])
    empty = np.full((4, 5, 3), FREE_INDEX, np.uint8)
    assert (render.top_labels(empty) == FREE_INDEX).all()


def test_rendered_png_has_class_colours_at_known_columns(occ3d, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels_file = tmp_path / "labels.npz"
    np.savez_compressed(labels_file, **occ3d)
    out = tmp_path / "grid.png"
    assert cli.main(["render", str(labels_file), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"wrote {out} (1400x700 px, 39,092 occupied voxels, source: no source recorded)")
    image = rgb(out)
    assert image.shape == (700, 1400, 3)
    columns = uniform_columns(occ3d["semantics"])
    classes = {c for _, _, c in columns}
    assert {4, 11, 15, 16, FREE_INDEX} <= classes  # car, driveable surface, manmade, vegetation, free
    fig = render.render_grid(occ3d["semantics"], title=str(labels_file))  # same layout as the CLI drew
    for (ix, iy, c), (row, col) in zip(columns, bev_pixels(fig, image.shape[0], columns)):
        assert np.array_equal(image[row, col], OCC3D_COLORS[c]), (ix, iy, c)


def test_mask_and_camera_images(occ3d, shared_data: Path, tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.npz"
    np.savez_compressed(labels_file, **occ3d)
    out = tmp_path / "grid.png"
    scene = shared_data / "nuscenes_sample" / "scene-0061_ca9a282c"
    assert cli.main(["render", str(labels_file), "--out", str(out), "--mask", "camera", "--images",
                     str(scene / "calib.json")]) == 0
    image = rgb(out)
    assert image.shape == (1200, 1400, 3)
    masked = np.where(occ3d["mask_camera"] == 1, occ3d["semantics"], FREE_INDEX).astype(np.uint8)
    fig = render.render_grid(masked, images={"CAM_FRONT": np.zeros((9, 16, 3), np.uint8)}, title="x")
    free_after = ~(masked != FREE_INDEX).any(axis=2)  # (X, Y) columns with nothing visible
    around = np.ones((198, 198), bool)
    for dx in range(3):
        for dy in range(3):
            around &= free_after[dx:dx + 198, dy:dy + 198]
    occupied_before = (occ3d["semantics"] != FREE_INDEX).any(axis=2)[1:-1, 1:-1]
    hidden = np.argwhere(around & occupied_before)[::97] + 1  # (K, 2) occupied columns the mask hides
    assert len(hidden) >= 5
    columns = uniform_columns(masked) + [(ix, iy, FREE_INDEX) for ix, iy in hidden]
    # Visible voxels keep their colour, hidden columns are drawn free (white).
    for (ix, iy, c), (row, col) in zip(columns, bev_pixels(fig, image.shape[0], columns)):
        assert np.array_equal(image[row, col], OCC3D_COLORS[c]), (ix, iy, c)
    (front,) = [ax for ax in fig.axes if ax.get_title() == "CAM_FRONT"]
    x0, y0, x1, y1 = front.get_window_extent().extents
    panel = image[int(1200 - y1) + 2:int(1200 - y0) - 2, int(x0) + 2:int(x1) - 2]
    assert panel.std() > 20  # a real street scene, not an empty panel


def test_images_from_a_folder_of_cam_jpgs(shared_data: Path) -> None:
    images = render.load_camera_images(shared_data / "nuscenes_sample" / "scene-0003_fd842039" / "samples" / "imgs")
    assert sorted(images) == sorted(["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK",
                                     "CAM_BACK_RIGHT"])
    assert all(image.shape == (900, 1600, 3) for image in images.values())


def test_refusals_name_the_problem(occ3d, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, semantics=occ3d["semantics"], mask_camera=occ3d["mask_camera"][:, :, :8])
    out = tmp_path / "x.png"
    assert cli.main(["render", str(bad), "--out", str(out)]) == 2
    assert f"{bad}: 'mask_camera' has shape (200, 200, 8), expected (200, 200, 16)" in capsys.readouterr().err
    prediction = tmp_path / "pred.npz"
    np.savez_compressed(prediction, pred=occ3d["semantics"])
    assert cli.main(["render", str(prediction), "--out", str(out), "--mask", "camera"]) == 2
    assert "missing mask_camera" in capsys.readouterr().err
    assert cli.main(["render", "--out", str(out)]) == 2
    assert "exactly one of INPUT or --topic" in capsys.readouterr().err
    out.write_bytes(b"old")
    assert cli.main(["render", str(prediction), "--out", str(out)]) == 2
    assert f"{out} exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"old"
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="differs from the grid size"):
        render.render_grid(occ3d["semantics"][:, :, :8])


def draw_args(**given: object) -> argparse.Namespace:
    """The arguments `gsdocc render` parses, with ``given`` set (input, mask, topic, timeout)."""
    return argparse.Namespace(**{"input": None, "mask": None, "topic": None, "timeout": 10.0, **given})


def test_recorded_grid_is_captioned_with_its_source_frame_stamp_and_classes(
        occ3d, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    grid_file = tmp_path / "3e8750f331d7499e9b5123e9eb70f2e2.npz"
    info = GridInfo("GSD-OCC RANDOM WEIGHTS (seed 0)", "base_link", 1532402927_612460000, CLASS_NAMES)
    write_grid_file(grid_file, occ3d["semantics"], info)
    assert read_grid_file(grid_file).info == info
    labels, geometry, read_info, title = render_tool.grid_to_draw(draw_args(input=grid_file))
    assert np.array_equal(labels, occ3d["semantics"]) and geometry == OCC3D_GEOMETRY and read_info == info
    # 1532402927.61246 s after the Unix epoch is 2018-07-24 03:28:47.612 UTC (nuScenes scene-0061, Singapore).
    assert title == ("prediction: 3e8750f331d7499e9b5123e9eb70f2e2.npz | source: GSD-OCC RANDOM WEIGHTS (seed 0)\n"
                     "frame: base_link | stamp 1532402927.612460000 s = 2018-07-24 03:28:47.612 UTC | 18 Occ3D classes")
    out = tmp_path / "grid.png"
    assert cli.main(["render", str(grid_file), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"wrote {out} (1400x700 px, 39,092 occupied voxels, source: GSD-OCC RANDOM WEIGHTS (seed 0))")
    assert rgb(out).shape == (700, 1400, 3)


def test_files_without_metadata_are_named_by_kind(occ3d, shared_data: Path, tmp_path: Path) -> None:
    truth = shared_data / "occ3d_sample" / "labels.npz"
    *_, title = render_tool.grid_to_draw(draw_args(input=truth, mask="camera"))
    assert title == ("Occ3D ground truth with mask_camera, mask_lidar: labels.npz, drawn inside mask_camera | "
                     "source: no source recorded\n"
                     "frame: not recorded | stamp not recorded | classes not recorded (read as Occ3D)")
    sparseocc = tmp_path / "token.npz"
    np.savez_compressed(sparseocc, pred=occ3d["semantics"])
    info, title = render_tool.grid_to_draw(draw_args(input=sparseocc))[2:]
    assert info == GridInfo() and title.startswith("prediction: token.npz | source: no source recorded\n")
    assert cli.main(["render", str(sparseocc), "--out", str(tmp_path / "p.png")]) == 0


@pytest.mark.parametrize("key, value, message", [
    ("source", np.array(["a", "b"]), "'source' must be one string (numpy unicode), got <U1 (2,)"),
    ("frame_id", np.array(b"base_link"), "'frame_id' must be one string (numpy unicode), got |S9 ()"),
    ("class_names", np.arange(18), "'class_names' must be a 1-D array of strings (numpy unicode), got int64 (18,)"),
    ("class_names", np.array(CLASS_NAMES[:17]), "'class_names' are not the Occ3D classes (17 names, expected 18, "
                                                "one per label 0..17); this package reads Occ3D labels only"),
    ("class_names", np.array(CLASS_NAMES[:3] + ("coach",) + CLASS_NAMES[4:]),
     "'class_names' are not the Occ3D classes (label 3 is 'coach', expected 'bus')"),
    ("stamp_ns", np.float64(1.5e18), "'stamp_ns' must be one integer, got float64 ()"),
    ("source", np.array("random weights", dtype=object),  # pickled inside: refused, never unpickled
     "not a readable .npz file (Object arrays cannot be loaded when allow_pickle=False)"),
])
def test_malformed_metadata_is_refused_in_one_line(occ3d, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   key: str, value: np.ndarray, message: str) -> None:
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, semantics=occ3d["semantics"], **{key: value})
    assert cli.main(["render", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: {message}" in err
    assert not (tmp_path / "x.png").exists()


LIVE_PUBLISHER = r"""
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from gsdocc_ros.msg import SemanticVoxelGrid
from gsdocc_ros.pipeline.grid import OccupancyGrid
from gsdocc_ros.ros.conversions import grid_to_message

labels = np.load(sys.argv[2])["semantics"]
grid = OccupancyGrid(labels=labels, stamp_ns=1532402927612460000)
msg = grid_to_message(grid, "base_link", "GSD-OCC weights live.pth")
rclpy.init()
node = rclpy.create_node("live_grid_sender")
pub = node.create_publisher(SemanticVoxelGrid, sys.argv[1], QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
deadline = time.monotonic() + 60
while time.monotonic() < deadline:  # again and again: each reader takes the next one
    pub.publish(msg)
    rclpy.spin_once(node, timeout_sec=0.2)
"""


def test_live_grid_is_captioned_like_a_recorded_one(occ3d, tmp_path: Path, subprocess_env: dict[str, str],
                                                   python: str, capsys: pytest.CaptureFixture) -> None:
    labels_file = tmp_path / "labels.npz"
    np.savez_compressed(labels_file, semantics=occ3d["semantics"])
    sender = subprocess.Popen([python, "-c", LIVE_PUBLISHER, "/test/live_grid", str(labels_file)], env=subprocess_env)
    try:
        labels, _, info, title = render_tool.grid_to_draw(draw_args(topic="/test/live_grid", timeout=30.0))
        code = cli.main(["render", "--topic", "/test/live_grid", "--timeout", "30", "--out", str(tmp_path / "x.png")])
    finally:
        sender.terminate()
        sender.wait(timeout=10)
    assert np.array_equal(labels, occ3d["semantics"])
    assert info == GridInfo("GSD-OCC weights live.pth", "base_link", 1532402927_612460000, CLASS_NAMES)
    assert title == ("live grid: /test/live_grid | source: GSD-OCC weights live.pth\n"
                     "frame: base_link | stamp 1532402927.612460000 s = 2018-07-24 03:28:47.612 UTC | 18 Occ3D classes")
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(
        "39,092 occupied voxels, source: GSD-OCC weights live.pth)")


MALFORMED_PUBLISHER = r"""
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from gsdocc_ros.msg import SemanticVoxelGrid
from gsdocc_ros.pipeline.grid import CLASS_NAMES

msg = SemanticVoxelGrid()
msg.origin.orientation.w = 1.0
msg.voxel_size = 0.4
msg.size_x, msg.size_y, msg.size_z = 200, 200, 16
msg.labels = bytes(200 * 200 * 8)  # half the voxels the sizes promise
msg.class_names = list(CLASS_NAMES)
msg.free_index = 17
rclpy.init()
node = rclpy.create_node("bad_grid_sender")
pub = node.create_publisher(SemanticVoxelGrid, sys.argv[1], QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
deadline = time.monotonic() + 60
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.05)
pub.publish(msg)
while time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
"""


def test_live_grid_whose_sizes_disagree_is_refused(tmp_path: Path, subprocess_env: dict[str, str], python: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    sender = subprocess.Popen([python, "-c", MALFORMED_PUBLISHER, "/test/bad_grid"], env=subprocess_env)
    try:
        code = cli.main(["render", "--topic", "/test/bad_grid", "--timeout", "30", "--out", str(tmp_path / "x.png")])
    finally:
        sender.terminate()
        sender.wait(timeout=10)
    assert code == 2
    err = capsys.readouterr().err
    assert "grid from /test/bad_grid refused: SemanticVoxelGrid.labels: 320000 entries, but size_x*size_y*size_z" in err
    assert not (tmp_path / "x.png").exists()
