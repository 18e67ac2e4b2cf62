"""Occupancy grids as pictures: a top-down view (highest non-free voxel per column, Occ3D colours) and a 3D view of
the non-free voxel centres, optionally beside the six camera images; PNGs written atomically.

Top-down: x (forward) up, y (left) to the left, ego metres, white where a column is free. 3D: evenly subsampled
to at most MAX_POINTS_3D centres, z stretched by Z_EXAGGERATION.
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


def draw_bev(ax: Axes, labels: np.ndarray, geometry: GridGeometry = OCC3D_GEOMETRY) -> None:
    """Top-down view on ``ax`` in ego metres (horizontal: y, left positive on the left; vertical: x forward)."""
    (x0, y0, _), size = geometry.origin, geometry.voxel_size
    x1, y1 = x0 + labels.shape[0] * size, y0 + labels.shape[1] * size
    ax.imshow(bev_image(labels), extent=(y1, y0, x0, x1), interpolation="nearest", origin="upper")
    ax.plot(0, 0, marker="^", color="black", markersize=6)  # the ego origin, pointing forward
    ax.set_xlabel("y (m, left)")
    ax.set_ylabel("x (m, forward)")
    ax.set_title("top-down: highest occupied voxel")
    ax.set_label(BEV_LABEL)


def draw_3d(ax: Axes, labels: np.ndarray, geometry: GridGeometry = OCC3D_GEOMETRY,
            max_points: int = MAX_POINTS_3D) -> None:
    """Non-free voxel centres as square markers coloured by class on a 3D axes (evenly subsampled)."""
    index = np.argwhere(labels != FREE_INDEX)  # (M, 3) x, y, z indices
    index = index[::max(1, math.ceil(len(index) / max_points))]
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
    ax.set_title(f"3D: {len(index):,} voxel centres (height x{Z_EXAGGERATION})")


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
                images: dict[str, np.ndarray] | None = None, title: str = "") -> Figure:
    """The whole picture: cameras (2x3, model order) on top when given, then top-down and 3D views with a legend.

    Sizes are fixed: 1400x700 px without images, 1400x1200 px with them (DPI 100).
    """
    if labels.shape != tuple(geometry.size):
        raise ValueError(f"labels: shape {labels.shape} differs from the grid size {tuple(geometry.size)}")
    fig = Figure(figsize=(14, 12 if images else 7), dpi=DPI)
    grids = fig.add_gridspec(2 if images else 1, 1, height_ratios=(5, 7) if images else None,
                             left=0.05, right=0.98, bottom=0.07, top=0.93 if title else 0.96, hspace=0.12)
    if images:
        cams = grids[0].subgridspec(2, 3, wspace=0.02, hspace=0.1)
        for i, name in enumerate(CAMERA_NAMES):
            ax = fig.add_subplot(cams[i // 3, i % 3])
            if name in images:
                ax.imshow(images[name])
            ax.set_title(name, fontsize=9)
            ax.set_axis_off()
    views = grids[-1].subgridspec(1, 3, width_ratios=(6, 6, 2), wspace=0.15)
    draw_bev(fig.add_subplot(views[0]), labels, geometry)
    draw_3d(fig.add_subplot(views[1], projection="3d"), labels, geometry)
    present = [c for c in np.unique(labels) if c != FREE_INDEX]
    legend_ax = fig.add_subplot(views[2])
    legend_ax.set_axis_off()
    legend_ax.legend(handles=[Patch(facecolor=OCC3D_COLORS[c] / 255.0, edgecolor="black", label=CLASS_NAMES[c])
                              for c in present], loc="center left", fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` as PNG at its own size, to a temporary name first."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


