"""`gsdocc render`: PNG size, top-down pixels in the class colour of known columns, refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsdocc_ros.pipeline.grid import FREE_INDEX, OCC3D_COLORS, OCC3D_GEOMETRY
from gsdocc_ros.tools import cli
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
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {out} (1400x700 px, 39,092 occupied voxels)"
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
