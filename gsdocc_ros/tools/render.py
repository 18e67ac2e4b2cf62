"""Draw an occupancy grid to PNG: a top-down view and a 3D view, optionally beside the six camera images.

  gsdocc render INPUT --out PNG [--images DIR_OR_CALIB] [--mask camera|lidar] [--force]
  gsdocc render --topic /gsdocc/occupancy --out PNG [--timeout S] [--images DIR_OR_CALIB] [--force]

INPUT: an Occ3D labels.npz, a prediction <token>.npz (`semantics` or `pred`) or a file from `gsdocc record`,
uint8 (200, 200, 16) in Occ3D (x, y, z) order; --topic instead takes one SemanticVoxelGrid from a live topic.
Top-down (BEV): each (x, y) column coloured by its highest non-free voxel (Occ3D palette), white where the
column is free; x (forward) up, y (left) to the left, ego metres. 3D: centres of the non-free voxels, evenly
subsampled to at most 40 000. --mask draws only the voxels inside the file's mask_camera / mask_lidar.
--images: a folder of CAM_FRONT.jpg, CAM_BACK.jpg, ... or a nuScenes sample scene folder (or its calib.json).
Grids whose sizes disagree with their data are refused. The PNG is written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, load_sample_frames
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_COLORS, OCC3D_GEOMETRY, GridGeometry
from gsdocc_ros.tools.cli import ToolError
from gsdocc_ros.tools.grid_files import atomic_output, read_grid_file, refuse_existing

VERB = "render"
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


def grid_from_topic(topic: str, timeout_s: float) -> tuple[np.ndarray, GridGeometry, str]:
    """(labels, geometry, description) of the first SemanticVoxelGrid on ``topic``; ToolError on timeout or bad sizes."""
    from gsdocc_ros.ros.conversions import grid_from_message
    from gsdocc_ros.tools.record import receive_grids

    msg = next(receive_grids(topic, count=1, timeout_s=timeout_s), None)
    if msg is None:
        raise ToolError(f"no SemanticVoxelGrid on {topic} within {timeout_s} s")
    try:
        grid = grid_from_message(msg)
    except ValueError as error:
        raise ToolError(f"grid from {topic} refused: {error}") from None
    return grid.labels, grid.geometry, f"{topic} @ {grid.stamp_ns} ns ({msg.source or 'unknown source'})"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc render``."""
    parser = subparsers.add_parser(VERB, help="draw a grid file or a live grid to PNG (top-down + 3D)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, nargs="?", help="labels.npz / <token>.npz to draw (or use --topic)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--topic", help="draw the next SemanticVoxelGrid from this topic instead of a file")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait on --topic (default: %(default)s)")
    parser.add_argument("--images", type=Path, help="folder of CAM_*.jpg, or a scene folder / calib.json")
    parser.add_argument("--mask", choices=("camera", "lidar"), help="draw only voxels inside this mask of INPUT")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, draw, write the PNG; ToolError (exit 2) naming what is wrong."""
    if (args.input is None) == (args.topic is None):
        raise ToolError("give exactly one of INPUT or --topic")
    if args.mask and args.topic:
        raise ToolError("--mask needs a file INPUT (a live grid carries no Occ3D masks)")
    if not args.out.parent.is_dir():
        raise ToolError(f"output folder {args.out.parent} does not exist")
    refuse_existing([args.out], args.force)
    images = load_camera_images(args.images) if args.images is not None else None
    if args.topic:
        labels, geometry, title = grid_from_topic(args.topic, args.timeout)
    else:
        grid = read_grid_file(args.input, need_masks=(f"mask_{args.mask}",) if args.mask else ())
        labels, geometry, title = grid.labels, OCC3D_GEOMETRY, str(args.input)
        if args.mask:
            labels = np.where(grid.masks[f"mask_{args.mask}"], labels, FREE_INDEX).astype(np.uint8)
            title += f" (inside mask_{args.mask})"
    fig = render_grid(labels, geometry, images, title)
    save_png(fig, args.out)
    width, height = fig.canvas.get_width_height()
    print(f"wrote {args.out} ({width}x{height} px, {int(np.count_nonzero(labels != FREE_INDEX)):,} occupied voxels)")
    return 0
