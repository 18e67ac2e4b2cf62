"""Draw an occupancy grid to PNG: a top-down view and a 3D view, optionally beside the six camera images.

  gsdocc render INPUT --out PNG [--images DIR_OR_CALIB] [--mask camera|lidar] [--force]
  gsdocc render --topic /gsdocc/occupancy --out PNG [--timeout S] [--images DIR_OR_CALIB] [--force]

INPUT: an Occ3D labels.npz, a prediction <token>.npz (`semantics` or `pred`) or a file from `gsdocc record`,
uint8 (200, 200, 16) in Occ3D (x, y, z) order; --topic instead takes one SemanticVoxelGrid from a live topic.
Top-down (BEV): each (x, y) column coloured by its highest non-free voxel (Occ3D palette), white where the
column is free; x (forward) up, y (left) to the left, ego metres. 3D: centres of the non-free voxels, evenly
subsampled to at most 40 000. --mask draws only the voxels inside the file's mask_camera / mask_lidar.
--images: a folder of CAM_FRONT.jpg, CAM_BACK.jpg, ... or a nuScenes sample scene folder (or its calib.json).
The title says what the picture shows: the kind (Occ3D ground truth with its masks, prediction, live grid) and
name, then the source (model and weights), frame, stamp (seconds and UTC) and class names the file or message
carries ("no source recorded" where a file, like Occ3D ground truth, has none).
Grids whose sizes disagree with their data are refused. The PNG is written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gsdocc_ros.errors import ToolError, require_folder

if TYPE_CHECKING:
    import numpy as np

    from gsdocc_ros.io.grid_files import GridInfo
    from gsdocc_ros.pipeline.grid import GridGeometry

VERB = "render"


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


def grid_to_draw(args: argparse.Namespace) -> tuple[np.ndarray, GridGeometry, GridInfo, str]:
    """(labels, geometry, info, title) of INPUT (inside --mask) or of the next grid on --topic."""
    import numpy as np

    from gsdocc_ros.io.grid_files import read_grid_file
    from gsdocc_ros.pipeline.grid import FREE_INDEX, OCC3D_GEOMETRY

    if args.topic:
        from gsdocc_ros.ros.grid_recorder import grid_from_topic

        labels, geometry, info = grid_from_topic(args.topic, args.timeout)
        return labels, geometry, info, info.caption(args.topic, "live grid")
    grid = read_grid_file(args.input, need_masks=(f"mask_{args.mask}",) if args.mask else ())
    labels, name = grid.labels, args.input.name
    if args.mask:
        labels = np.where(grid.masks[f"mask_{args.mask}"], labels, FREE_INDEX).astype(np.uint8)
        name += f", drawn inside mask_{args.mask}"
    return labels, OCC3D_GEOMETRY, grid.info, grid.info.caption(name, grid.kind)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, draw, write the PNG; ToolError (exit 2) naming what is wrong."""
    import numpy as np

    from gsdocc_ros.io.output import refuse_existing
    from gsdocc_ros.pipeline.grid import FREE_INDEX

    if (args.input is None) == (args.topic is None):
        raise ToolError("give exactly one of INPUT or --topic")
    if args.mask and args.topic:
        raise ToolError("--mask needs a file INPUT (a live grid carries no Occ3D masks)")
    require_folder(args.out.parent, "output")
    refuse_existing([args.out], args.force)
    labels, geometry, info, title = grid_to_draw(args)
    from gsdocc_ros.viz.render import load_camera_images, render_grid, save_png  # matplotlib: once the input is read

    images = load_camera_images(args.images) if args.images is not None else None
    fig = render_grid(labels, geometry, images, title)
    save_png(fig, args.out)
    width, height = fig.canvas.get_width_height()
    print(f"wrote {args.out} ({width}x{height} px, {int(np.count_nonzero(labels != FREE_INDEX)):,} occupied voxels, "
          f"source: {info.source or 'no source recorded'})")
    return 0


