"""Occ3D-style grid files (.npz) and atomic output paths, shared by the eval, record and render tools.

Layouts read here: Occ3D ground truth ``labels.npz`` (``semantics``, ``mask_camera``, ``mask_lidar``), and
per-token predictions ``<token>.npz`` with ``semantics`` (this project, Occ3D) or ``pred`` (SparseOcc's
RayIoU tooling). All are uint8 (200, 200, 16) in Occ3D (x, y, z) order.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsdocc_ros.pipeline.grid import CLASS_NAMES, OCC3D_GEOMETRY
from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.output import atomic_output

OCC3D_SHAPE: tuple[int, int, int] = OCC3D_GEOMETRY.size
"""(X, Y, Z) shape of every Occ3D-nuScenes grid file."""

PREDICTION_KEYS: tuple[str, ...] = ("semantics", "pred")
"""Keys a prediction file may hold its labels under, in order of preference."""

MASK_KEYS: tuple[str, ...] = ("mask_camera", "mask_lidar")
"""Visibility masks of an Occ3D ground-truth file."""

POSE_KEYS: tuple[str, ...] = ("stamp_ns", "ego_pose", "lidar_to_ego")
"""Keys of a prediction file that place its grid (for the RayIoU origins): stamp, ego -> fixed, LiDAR -> ego."""


@dataclass
class GridFile:
    """The labels of one grid file and whichever visibility masks it carries."""

    labels: np.ndarray
    """uint8 (X, Y, Z) class labels, Occ3D order."""
    masks: dict[str, np.ndarray]
    """bool (X, Y, Z) per mask key present (mask_camera, mask_lidar)."""
    path: Path


def _checked(npz: np.lib.npyio.NpzFile, key: str, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """``npz[key]`` as a uint8 array of ``shape``; ToolError naming the file and key otherwise."""
    array = npz[key]
    if array.shape != shape:
        raise ToolError(f"{path}: '{key}' has shape {array.shape}, expected {shape}")
    if array.dtype != np.uint8:
        raise ToolError(f"{path}: '{key}' has dtype {array.dtype}, expected uint8")
    return array


def read_grid_file(path: str | Path, need_masks: Iterable[str] = (), shape: tuple[int, ...] = OCC3D_SHAPE) -> GridFile:
    """Read a ground-truth or prediction .npz, checking shapes, dtypes, label range and 0/1 masks.

    ``need_masks``: mask keys that must be present (``("mask_camera",)`` for scoring ground truth).
    """
    path = Path(path)
    if not path.is_file():
        raise ToolError(f"no such grid file: {path}")
    try:
        npz_file = np.load(path, allow_pickle=False)
        if not isinstance(npz_file, np.lib.npyio.NpzFile):  # a plain .npy array or pickle
            raise ValueError("not an .npz archive of named arrays")
        with npz_file as npz:
            key = next((k for k in PREDICTION_KEYS if k in npz.files), None)
            if key is None:
                raise ToolError(f"{path}: no labels; expected one of the keys {', '.join(PREDICTION_KEYS)}, "
                                f"found {', '.join(map(repr, npz.files)) or 'none'}")
            labels = _checked(npz, key, path, shape)
            missing = [k for k in need_masks if k not in npz.files]
            if missing:
                raise ToolError(f"{path}: missing {', '.join(missing)} "
                                f"(keys present: {', '.join(map(repr, npz.files))})")
            masks = {k: _checked(npz, k, path, shape) for k in MASK_KEYS if k in npz.files}
    # damaged, empty, pickled; RuntimeError and NotImplementedError: encrypted or unsupported zip members
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as error:
        raise ToolError(f"{path}: not a readable .npz file ({error})") from None
    if labels.max() >= len(CLASS_NAMES):
        raise ToolError(f"{path}: label {int(labels.max())} outside 0..{len(CLASS_NAMES) - 1}")
    for key, mask in masks.items():
        if mask.max() > 1:
            raise ToolError(f"{path}: '{key}' holds values other than 0 and 1")
    return GridFile(labels=labels, masks={k: m.astype(bool) for k, m in masks.items()}, path=path)


@dataclass
class GridPose:
    """Where a recorded grid was: its stamp, the ego pose and the LiDAR mounting at that stamp."""

    stamp_ns: int
    ego_pose: np.ndarray
    """float64 (4, 4) ego -> fixed frame (map) at the grid's stamp."""
    lidar_to_ego: np.ndarray
    """float64 (4, 4) LiDAR -> ego mounting."""


def read_grid_pose(path: str | Path) -> GridPose | None:
    """The ``POSE_KEYS`` of a prediction file, None when it lacks any; ToolError when they are malformed."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not all(key in npz.files for key in POSE_KEYS):
                return None
            stamp, ego, lidar = (npz[key] for key in POSE_KEYS)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as error:
        raise ToolError(f"{path}: not a readable .npz file ({error})") from None
    for key, value in (("ego_pose", ego), ("lidar_to_ego", lidar)):
        if value.shape != (4, 4) or not np.issubdtype(value.dtype, np.floating) or not np.isfinite(value).all():
            raise ToolError(f"{path}: '{key}' must be a finite float (4, 4) transform, got {value.dtype} {value.shape}")
    if stamp.shape != () or not np.issubdtype(stamp.dtype, np.integer):
        raise ToolError(f"{path}: 'stamp_ns' must be one integer, got {stamp.dtype} {stamp.shape}")
    return GridPose(int(stamp), ego.astype(np.float64), lidar.astype(np.float64))


def write_grid_file(path: str | Path, labels: np.ndarray, **extra: np.ndarray | int) -> None:
    """Write uint8 (X, Y, Z) ``labels`` as ``semantics`` (plus ``extra`` arrays) to ``path`` atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype != np.uint8:
        raise ValueError(f"labels: expected a uint8 (X, Y, Z) array, got {labels.dtype} {labels.shape}")
    with atomic_output(path) as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, semantics=labels, **extra)
