"""Frozen settings of the GSD-OCC network; defaults are the official 256x704 config."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OCC3D_CLASS_NAMES: tuple[str, ...] = (
    "others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle",
    "pedestrian", "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat",
    "sidewalk", "terrain", "manmade", "vegetation", "free",
)
"""Occ3D class names by label index; 17 is free space."""


def _bins(lo: float, hi: float, step: float) -> int:
    """Number of cells of ``step`` in [lo, hi), as the official grid config counts them."""
    return int(round((hi - lo) / step))


@dataclass(frozen=True)
class GridConfig:
    """The LSS lifting grid (0.8 m voxels) and the depth bins of the depth net."""

    x: tuple[float, float, float] = (-40.0, 40.0, 0.8)
    """Lower bound, upper bound and cell size along ego x, in metres."""
    y: tuple[float, float, float] = (-40.0, 40.0, 0.8)
    """Lower bound, upper bound and cell size along ego y, in metres."""
    z: tuple[float, float, float] = (-1.0, 5.4, 0.8)
    """Lower bound, upper bound and cell size along ego z, in metres."""
    depth: tuple[float, float, float] = (2.0, 42.0, 0.5)
    """First bin start, end and bin width of the depth distribution, in metres."""

    @property
    def size(self) -> tuple[int, int, int]:
        """Cell counts (X, Y, Z) of the lifting grid: (100, 100, 8) by default."""
        return tuple(_bins(*axis) for axis in (self.x, self.y, self.z))  # type: ignore[return-value]

    @property
    def num_depth_bins(self) -> int:
        """Number of depth bins D: 80 by default."""
        return _bins(*self.depth)


@dataclass(frozen=True)
class ImageConfig:
    """Network input size and the source size the official resize was designed for."""

    input_size: tuple[int, int] = (256, 704)
    """(H, W) of each camera image fed to the network; (512, 1408) for the large config."""
    downsample: int = 16
    """Stride of the image features that the depth net and the lifting see."""

    @property
    def feature_size(self) -> tuple[int, int]:
        """(H, W) of the image feature map: (16, 44) at 256x704."""
        return self.input_size[0] // self.downsample, self.input_size[1] // self.downsample


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


@dataclass(frozen=True)
class OccupancyConfig:
    """The output grid, defined once: its geometry (Occ3D: 200x200x16 voxels of 0.4 m from (-40, -40, -1) m) and
    its classes (18, free space included)."""

    geometry: GridGeometry = GridGeometry()
    class_names: tuple[str, ...] = OCC3D_CLASS_NAMES
    """Class name by label index, free space included."""
    free_index: int = 17
    """Index of the free-space class."""

    @property
    def size(self) -> tuple[int, int, int]:
        """Output voxel counts (X, Y, Z)."""
        return self.geometry.size

    @property
    def num_classes(self) -> int:
        """Number of semantic classes, free space included."""
        return len(self.class_names)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the GSD-OCC network's shapes."""

    grid: GridConfig = field(default_factory=GridConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    fpn_channels: int = 512
    """Channels of the image neck output (the depth net input)."""
    context_channels: int = 80
    """Channels of the lifted context feature (numC_Trans)."""
    depth_mid_channels: int = 512
    """Hidden width of the depth net."""
    history_frames: int = 15
    """Past BEV frames kept by the temporal cache (16 frames with the current one)."""
    history_out_channels: int = 256
    """Channels of the fused BEV feature."""
    history_step_s: float = 0.5
    """Seconds per history step: the model was trained on 2 Hz nuScenes keyframes."""
    bev_channels: tuple[int, int] = (512, 1024)
    """Channels of the two BEV encoder stages."""
    bev_out_channels: int = 256
    """Channels of the BEV encoder neck output (the occupancy head input)."""
    head_mid_channels: int = 128
    """Hidden width of the occupancy head."""
    large_kernel: tuple[int, int, int] = (11, 11, 1)
    """Kernel of the re-parameterisable large-kernel 3D block."""

    @classmethod
    def for_input_size(cls, height: int, width: int) -> "ModelConfig":
        """The official config at another network input size, e.g. 512x1408."""
        return cls(image=ImageConfig(input_size=(height, width)))
