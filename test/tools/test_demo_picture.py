"""The demo's one picture per camera set: cameras, prediction and ground truth side by side, the 3D titles' subsample
counts, the how-to-read line; and the node's stages, each described in words for the summary."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsdocc_ros.pipeline.frames import CAMERA_NAMES
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_COLORS
from gsdocc_ros.ros.stages import STAGE_DESCRIPTIONS, NodeStage
from gsdocc_ros.viz import render

PREDICTION = "prediction (random weights)"
TRUTH = "ground truth of the synthetic scene"
TITLE_3D = re.compile(r"3D: (?:all (?P<all>[\d,]+)|(?P<drawn>[\d,]+) of (?P<total>[\d,]+)) occupied voxels drawn\n"
                      r"\((?:every (?P<step>\d+)(?:st|nd|rd|th), )?height x3\)")


@pytest.fixture(scope="module")
def truth(shared_data: Path) -> np.ndarray:
    """The real Occ3D sample's labels (39,092 occupied voxels: fewer than the 3D view's limit)."""
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as npz:
        return npz["semantics"]


@pytest.fixture(scope="module")
def dense(truth: np.ndarray) -> np.ndarray:
    """A prediction as random weights give it: nearly every voxel occupied, one class almost everywhere."""
    labels = np.full(truth.shape, 11, np.uint8)  # driveable_surface
    labels[truth == 4] = 4  # with the sample's cars, so the legend has two classes
    labels[:, :, 15] = FREE_INDEX
    return labels


def counts_of(title: str) -> tuple[int, int, int]:
    """(drawn, total, step) stated by a 3D title."""
    match = TITLE_3D.search(title)
    assert match, title
    if match["all"]:
        total = int(match["all"].replace(",", ""))
        return total, total, 1
    return int(match["drawn"].replace(",", "")), int(match["total"].replace(",", "")), int(match["step"])


def test_combined_picture_has_cameras_prediction_truth_and_reading(dense, truth, shared_data: Path,
                                                                   tmp_path: Path) -> None:
    images = render.load_camera_images(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c")
    reading = render.reading_line(random_weights=True, with_truth=True)
    fig = render.render_grid(dense, images=images, title="GSD-OCC RANDOM WEIGHTS (seed 0): x", name=PREDICTION,
                             truth=truth, truth_name=TRUTH, reading=reading)
    out = tmp_path / "set.png"
    render.save_png(fig, out)
    with Image.open(out) as png:
        picture = np.asarray(png.convert("RGB"))
    assert picture.shape == (1280, 2100, 3)  # 21 x (12 + 0.8) inches at 100 dpi

    titles = [ax.get_title() for ax in fig.axes]
    assert [t for t in titles if t in CAMERA_NAMES] == list(CAMERA_NAMES)
    views = {ax.get_title(): ax for ax in fig.axes if ax.get_title() not in CAMERA_NAMES and ax.get_title()}
    assert sorted(t.split("\n")[0] for t in views) == sorted([PREDICTION, PREDICTION, TRUTH, TRUTH])
    for labels, name in ((dense, PREDICTION), (truth, TRUTH)):
        (ax,) = [ax for t, ax in views.items() if t.startswith(f"{name}\n3D:")]
        drawn, total, step = counts_of(ax.get_title())
        assert total == np.count_nonzero(labels != FREE_INDEX)
        assert drawn == len(ax.collections[0].get_offsets()) == len(range(0, total, step))
        assert step == math.ceil(total / render.MAX_POINTS_3D)
    assert counts_of(next(t for t in views if t.startswith(f"{PREDICTION}\n3D:")))[2] > 1  # really a subsample
    assert counts_of(next(t for t in views if t.startswith(f"{TRUTH}\n3D:")))[2] == 1

    # Side by side on the picture: the prediction's top-down is one colour, the truth's shows the street.
    fig.draw_without_rendering()
    panels = {}
    for label in (render.BEV_LABEL, render.TRUTH_BEV_LABEL):
        (ax,) = [ax for ax in fig.axes if ax.get_label() == label]
        x0, y0, x1, y1 = ax.get_window_extent().extents
        panels[label] = picture[int(1280 - y1) + 3:int(1280 - y0) - 3, int(x0) + 3:int(x1) - 3].reshape(-1, 3)
    assert np.all(panels[render.BEV_LABEL] == OCC3D_COLORS[11], axis=1).mean() > 0.95
    truth_colours = {tuple(p) for p in np.unique(panels[render.TRUTH_BEV_LABEL], axis=0)}
    assert {tuple(OCC3D_COLORS[c]) for c in (4, 11, 15, 16, FREE_INDEX)} <= truth_colours  # cars, road, ..., free

    legend = [text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
    assert legend == [CLASS_NAMES[c] for c in np.union1d(np.unique(dense), np.unique(truth)) if c != FREE_INDEX]
    (line,) = [text for text in fig.texts if text.get_gid() == render.READING_GID]
    assert line.get_text() == reading


def test_reading_line_says_what_to_expect() -> None:
    random_line = render.reading_line(random_weights=True, with_truth=True)
    trained_line = render.reading_line(random_weights=False, with_truth=True)
    assert random_line != trained_line
    assert "RANDOM" in random_line and "meaningless" in random_line and "nearly uniform grid" in random_line
    assert "white = free" in trained_line and "x (forward) is up" in trained_line
    assert "RANDOM" not in trained_line
    for line in (random_line, trained_line):
        assert "what a trained model should approach" in line
    assert "ground truth" not in render.reading_line(random_weights=True, with_truth=False)


def test_ordinals() -> None:
    assert [render.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 16, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "16th", "21st", "22nd", "101st", "111th"]


def test_every_node_stage_is_described() -> None:
    """One description per stage of the node (the end-to-end demo test checks the node reports exactly these)."""
    assert set(STAGE_DESCRIPTIONS) == set(NodeStage)
    assert all(len(what.split()) >= 5 for what in STAGE_DESCRIPTIONS.values())
    assert "queueing" in STAGE_DESCRIPTIONS[NodeStage.SET_WAIT]
