"""The Occ3D-nuScenes output grid: classes, colours, geometry and the grid container."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gsdocc_ros.model.config import GridGeometry, OccupancyConfig

OCC3D = OccupancyConfig()
"""The Occ3D-nuScenes output grid (gsdocc_ros.model.config), of which the names below are parts."""

CLASS_NAMES: tuple[str, ...] = OCC3D.class_names
"""Occ3D class names by label index; 17 is free space."""

FREE_INDEX = OCC3D.free_index
"""Label of free space: never drawn, excluded from mIoU."""

OCC3D_COLORS = np.array(
    [
        [0, 0, 0], [255, 120, 50], [255, 192, 203], [255, 255, 0], [0, 150, 245],
        [0, 255, 255], [200, 180, 0], [255, 0, 0], [255, 240, 150], [135, 60, 0],
        [160, 32, 240], [255, 0, 255], [175, 0, 75], [75, 0, 75], [150, 240, 80],
        [230, 230, 250], [0, 175, 0], [255, 255, 255],
    ],
    dtype=np.uint8,
)
"""RGB colour per label, the palette of occupancy papers' figures (shape (18, 3))."""


OCC3D_GEOMETRY = OCC3D.geometry
"""The Occ3D-nuScenes grid: 200x200x16 voxels of 0.4 m from (-40, -40, -1) m."""


@dataclass
class OccupancyGrid:
    """One predicted grid in Occ3D (x, y, z) order, with the stamp of the camera set it came from."""

    labels: np.ndarray
    """uint8 (X, Y, Z) class labels."""
    stamp_ns: int
    """Stamp of the key camera image, in nanoseconds."""
    geometry: GridGeometry = OCC3D_GEOMETRY
    confidence: np.ndarray | None = None
    """Optional uint8 (X, Y, Z) confidence of the chosen class, 0..255 for probability 0..1."""
    camera_mask: np.ndarray | None = None
    """Optional bool (X, Y, Z): voxels seen by at least one camera."""
