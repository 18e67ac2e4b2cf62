"""Occupancy grids as pictures: a top-down view (highest non-free voxel per column, Occ3D colours) and a 3D view of
the non-free voxel centres, optionally below the six camera images and beside a ground truth drawn the same way,
with a line of text saying how to read the picture; PNGs written atomically.

Top-down: x (forward) up, y (left) to the left, ego metres, white where a column is free. 3D: evenly subsampled
to at most MAX_POINTS_3D centres (the title says how many of how many), z stretched by Z_EXAGGERATION.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.output import atomic_output
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, load_sample_frames
from gsdocc_ros.pipeline.grid import (
    CLASS_NAMES,
    FREE_INDEX,
    OCC3D_COLORS,
    OCC3D_GEOMETRY,
    GridGeometry,
)

DPI = 100
MAX_POINTS_3D = 40_000
"""Most voxel centres drawn in the 3D view (evenly subsampled beyond that)."""
Z_EXAGGERATION = 3
"""Vertical stretch of the 3D view: the grid is 80 m wide but only 6.4 m tall."""
BEV_LABEL = "bev"
"""Label of the top-down axes in a rendered figure: its data coordinates are (y, x) in ego metres."""
TRUTH_BEV_LABEL = "bev truth"
"""Label of the ground truth's top-down axes (same coordinates)."""
READING_HEIGHT_IN = 0.8
"""Height (inches) of the strip at the bottom of a figure that holds its reading line."""
READING_GID = "reading"
"""gid of the figure's how-to-read text."""


def top_labels(labels: np.ndarray, free_index: int = FREE_INDEX) -> np.ndarray:
    """(X, Y) label of the highest non-free voxel of each column of ``labels`` (X, Y, Z); ``free_index`` if none."""
    if labels.ndim != 3:
        raise ValueError(f"labels: expected an (X, Y, Z) array, got shape {labels.shape}")
    occupied = labels != free_index  # (X, Y, Z)
    top = labels.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)  # (X, Y) highest occupied z
    column = np.take_along_axis(labels, top[:, :, None], axis=2)[:, :, 0]  # (X, Y)
    return np.where(occupied.any(axis=2), column, free_index)


def bev_image(labels: np.ndarray, free_index: int = FREE_INDEX, colors: np.ndarray = OCC3D_COLORS) -> np.ndarray:
    """uint8 (X, Y, 3) top-down image: row r is x index X-1-r (forward up), column c is y index Y-1-c (left left)."""
    return colors[top_labels(labels, free_index)][::-1, ::-1]


def draw_bev(ax: Axes, labels: np.ndarray, geometry: GridGeometry = OCC3D_GEOMETRY, name: str = "",
             label: str = BEV_LABEL) -> None:
    """Top-down view on ``ax`` in ego metres (horizontal: y, left positive on the left; vertical: x forward);
    ``name`` (what the grid is) heads the title, ``label`` names the axes."""
    (x0, y0, _), size = geometry.origin, geometry.voxel_size
    x1, y1 = x0 + labels.shape[0] * size, y0 + labels.shape[1] * size
    ax.imshow(bev_image(labels), extent=(y1, y0, x0, x1), interpolation="nearest", origin="upper")
    ax.plot(0, 0, marker="^", color="black", markersize=6)  # the ego origin, pointing forward
    ax.set_xlabel("y (m, left)")
    ax.set_ylabel("x (m, forward)")
    ax.set_title(headed(name, "top-down: highest occupied voxel"))
    ax.set_label(label)


def draw_3d(ax: Axes, labels: np.ndarray, geometry: GridGeometry = OCC3D_GEOMETRY,
            max_points: int = MAX_POINTS_3D, name: str = "") -> None:
    """Non-free voxel centres as square markers coloured by class on a 3D axes (evenly subsampled: every n-th,
    the title says which n and how many of how many); ``name`` (what the grid is) heads the title."""
    index = np.argwhere(labels != FREE_INDEX)  # (M, 3) x, y, z indices
    occupied, step = len(index), max(1, math.ceil(len(index) / max_points))
    index = index[::step]
    centres = geometry.centres(index)  # (M, 3) ego metres
    colors = OCC3D_COLORS[labels[tuple(index.T)]] / 255.0
    ax.scatter(centres[:, 0], centres[:, 1], centres[:, 2], c=colors, s=2, marker="s", depthshade=False,
               linewidths=0)
    extent = np.array(geometry.size) * geometry.voxel_size
    lo = np.asarray(geometry.origin)
    ax.set_xlim(lo[0], lo[0] + extent[0])
    ax.set_ylim(lo[1], lo[1] + extent[1])
    ax.set_zlim(lo[2], lo[2] + extent[2])
    ax.set_box_aspect((extent[0], extent[1], extent[2] * Z_EXAGGERATION))
    ax.view_init(elev=40, azim=-160)
    drawn = f"all {occupied:,} occupied voxels drawn\n(" if step == 1 else \
        f"{len(index):,} of {occupied:,} occupied voxels drawn\n(every {ordinal(step)}, "
    ax.set_title(headed(name, f"3D: {drawn}height x{Z_EXAGGERATION})"))


def ordinal(n: int) -> str:
    """``n`` as an English ordinal: 2nd, 3rd, 11th, 16th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def headed(name: str, title: str) -> str:
    """An axes title under the name of what it shows (the title alone when ``name`` is empty)."""
    return f"{name}\n{title}" if name else title


def reading_line(random_weights: bool, with_truth: bool) -> str:
    """How to read a prediction's picture, in words: with random weights, that it is meaningless; with trained
    ones, what the colours and axes mean; and, beside a ground truth, what that truth is for."""
    if random_weights:
        line = ("How to read: the network runs on RANDOM weights, so its prediction is meaningless: expect a nearly "
                "uniform grid (one class almost everywhere).")
    else:
        line = ("How to read: top-down, x (forward) is up and y (left) to the left, in ego metres, the ego at the "
                "black triangle; colour = class of the highest occupied voxel of each column; white = free.")
    if with_truth:
        line += " The ground truth beside it shows what a trained model should approach."
    return line


def load_camera_images(source: Path) -> dict[str, np.ndarray]:
    """RGB images by camera name from a folder of CAM_*.jpg, or a scene folder / calib.json of nuscenes_sample."""
    from PIL import Image

    calib = source if source.name == "calib.json" else source / "calib.json"
    if calib.is_file():
        try:
            frames = load_sample_frames(calib.parent).frames
        except (KeyError, FileNotFoundError, ValueError) as error:
            raise ToolError(f"{calib}: cannot read the camera images ({error})") from None
        return {frame.name: frame.image for frame in frames}
    if not source.is_dir():
        raise ToolError(f"--images {source}: neither a folder nor a calib.json")
    images = {name: np.asarray(Image.open(source / f"{name}.jpg").convert("RGB"))
              for name in CAMERA_NAMES if (source / f"{name}.jpg").is_file()}
    if not images:
        raise ToolError(f"--images {source}: no {', '.join(f'{n}.jpg' for n in CAMERA_NAMES[:2])}, ... and no calib.json")
    return images


def render_grid(labels: np.ndarray, geometry: GridGeometry = OCC3D_GEOMETRY,
                images: dict[str, np.ndarray] | None = None, title: str = "", *, name: str = "",
                truth: np.ndarray | None = None, truth_name: str = "ground truth", reading: str = "") -> Figure:
    """The whole picture: cameras (2x3, model order) on top when given, then top-down and 3D views of ``labels``
    (headed ``name``), those of ``truth`` beside them when given (headed ``truth_name``), a legend of the classes
    present, and ``reading`` (how to read the picture) as a line of text at the bottom.

    Sizes are fixed (DPI 100): 1400 px wide, 2100 with a truth; 700 px high, 1200 with images; plus
    READING_HEIGHT_IN with a reading line.
    """
    for what, grid in (("labels", labels), ("truth", truth)):
        if grid is not None and grid.shape != tuple(geometry.size):
            raise ValueError(f"{what}: shape {grid.shape} differs from the grid size {tuple(geometry.size)}")
    width, height = (14 if truth is None else 21), (12 if images else 7)
    strip = READING_HEIGHT_IN if reading else 0.0
    fig = Figure(figsize=(width, height + strip), dpi=DPI)
    top = 1 - (0.07 if title else 0.04) * height / (height + strip)
    ratios = (5, 7) if truth is None else (6, 5)  # cameras : views
    grids = fig.add_gridspec(2 if images else 1, 1, height_ratios=ratios if images else None,
                             left=0.05 * 14 / width, right=1 - 0.02 * 14 / width,
                             bottom=(0.07 * height + strip) / (height + strip), top=top, hspace=0.12)
    if images:
        cams = grids[0].subgridspec(2, 3, wspace=0.02, hspace=0.1)
        for i, camera in enumerate(CAMERA_NAMES):
            ax = fig.add_subplot(cams[i // 3, i % 3])
            if camera in images:
                ax.imshow(images[camera])
            ax.set_title(camera, fontsize=9)
            ax.set_axis_off()
    views = grids[-1].subgridspec(1, 3 if truth is None else 5, width_ratios=(6, 6, 2) if truth is None
                                  else (6, 6, 6, 6, 3), wspace=0.25)
    draw_bev(fig.add_subplot(views[0]), labels, geometry, name)
    draw_3d(fig.add_subplot(views[1], projection="3d"), labels, geometry, name=name)
    if truth is not None:
        draw_bev(fig.add_subplot(views[2]), truth, geometry, truth_name, TRUTH_BEV_LABEL)
        draw_3d(fig.add_subplot(views[3], projection="3d"), truth, geometry, name=truth_name)
    shown = np.unique(labels) if truth is None else np.union1d(np.unique(labels), np.unique(truth))
    present = [c for c in shown if c != FREE_INDEX]
    legend_ax = fig.add_subplot(views[-1])
    legend_ax.set_axis_off()
    legend_ax.legend(handles=[Patch(facecolor=OCC3D_COLORS[c] / 255.0, edgecolor="black", label=CLASS_NAMES[c])
                              for c in present], loc="center left", fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    if reading:
        fig.text(0.5, strip / 2 / (height + strip), reading, ha="center", va="center", fontsize=12, wrap=True,
                 gid=READING_GID)
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` as PNG at its own size, to a temporary name first."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


