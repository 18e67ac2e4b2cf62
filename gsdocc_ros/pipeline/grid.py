"""The Occ3D-nuScenes output grid: classes, colours, geometry and the grid container."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle",
    "pedestrian", "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat",
    "sidewalk", "terrain", "manmade", "vegetation", "free",
)
"""Occ3D class names by label index; 17 is free space."""

FREE_INDEX = 17
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


@dataclass(frozen=True)
class GridGeometry:
    """Where the voxels of an (X, Y, Z)-indexed grid lie in the ego frame."""

    origin: tuple[float, float, float] = (-40.0, -40.0, -1.0)
    """Ego-frame position (m) of the outer corner of voxel (0, 0, 0)."""
    voxel_size: float = 0.4
    """Edge of a cubic voxel, in metres."""
    size: tuple[int, int, int] = (200, 200, 16)
    """Voxel counts (X, Y, Z)."""

    def centres(self, index: np.ndarray) -> np.ndarray:
        """Ego-frame centres (M, 3) of the voxels with integer indices ``index`` (M, 3) in (x, y, z)."""
        return np.asarray(self.origin, dtype=np.float32) + (index.astype(np.float32) + 0.5) * self.voxel_size


OCC3D_GEOMETRY = GridGeometry()
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
