"""Occ3D-style grid files (.npz) and atomic output paths, shared by the eval, record and render tools.

Layouts read here: Occ3D ground truth ``labels.npz`` (``semantics``, ``mask_camera``, ``mask_lidar``), and
per-token predictions ``<token>.npz`` with ``semantics`` (this project, Occ3D) or ``pred`` (SparseOcc's
RayIoU tooling). All are uint8 (200, 200, 16) in Occ3D (x, y, z) order. Files from `gsdocc record` and the demo
also say what they show (GridInfo: ``source``, ``frame_id``, ``stamp_ns``, ``class_names``): plain numpy arrays,
strings as numpy unicode, so ``allow_pickle=False`` reads them.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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

@dataclass(frozen=True)
class GridInfo:
    """What a grid shows, as its SemanticVoxelGrid said: None where the file (e.g. Occ3D ground truth) lacks it."""

    source: str | None = None
    """Model and weights that produced the grid (e.g. "random weights"), the message's ``source``."""
    frame_id: str | None = None
    """Frame the grid is expressed in (the message's ``header.frame_id``)."""
    stamp_ns: int | None = None
    """Stamp of the camera set the grid was computed from, in nanoseconds."""
    class_names: tuple[str, ...] | None = None
    """Class name of each label value; when present, always the Occ3D list (``CLASS_NAMES``)."""

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz arrays of the known fields: 0-d unicode strings, int64 stamp, 1-D unicode class names."""
        values = {"source": self.source, "frame_id": self.frame_id, "stamp_ns": self.stamp_ns,
                  "class_names": self.class_names}
        return {key: np.asarray(value, dtype=np.int64 if key == "stamp_ns" else np.str_)
                for key, value in values.items() if value is not None}

    def caption(self, name: str, kind: str) -> str:
        """Two lines saying what a picture of this grid shows: kind, name and source, then frame, stamp, classes."""
        if self.stamp_ns is None:
            stamp = "stamp not recorded"
        else:
            sec, nanosec = divmod(self.stamp_ns, 1_000_000_000)
            when = datetime.fromtimestamp(sec, timezone.utc) + timedelta(microseconds=nanosec // 1000)
            stamp = f"stamp {sec}.{nanosec:09d} s = {when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d} UTC"
        classes = (f"{len(self.class_names)} Occ3D classes" if self.class_names is not None
                   else "classes not recorded (read as Occ3D)")
        return (f"{kind}: {name} | source: {self.source or 'no source recorded'}\n"
                f"frame: {self.frame_id or 'not recorded'} | {stamp} | {classes}")


@dataclass
class GridFile:
    """The labels of one grid file, whichever visibility masks it carries and what it says it shows."""

    labels: np.ndarray
    """uint8 (X, Y, Z) class labels, Occ3D order."""
    masks: dict[str, np.ndarray]
    """bool (X, Y, Z) per mask key present (mask_camera, mask_lidar)."""
    path: Path
    info: GridInfo = GridInfo()
    """Source, frame, stamp and class names, None where the file lacks them."""

    @property
    def kind(self) -> str:
        """What the file is, for captions: Occ3D ground truth (it has visibility masks) or a prediction."""
        if self.masks:
            return f"Occ3D ground truth with {', '.join(self.masks)}"
        return "prediction"


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
            info = _read_info(npz, path)
    # damaged, empty, pickled; RuntimeError and NotImplementedError: encrypted or unsupported zip members
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as error:
        raise ToolError(f"{path}: not a readable .npz file ({error})") from None
    if labels.max() >= len(CLASS_NAMES):
        raise ToolError(f"{path}: label {int(labels.max())} outside 0..{len(CLASS_NAMES) - 1}")
    for key, mask in masks.items():
        if mask.max() > 1:
            raise ToolError(f"{path}: '{key}' holds values other than 0 and 1")
    return GridFile(labels=labels, masks={k: m.astype(bool) for k, m in masks.items()}, path=path, info=info)


def _stamp_ns(value: np.ndarray, path: Path) -> int:
    """The integer nanoseconds of a ``stamp_ns`` array; ToolError naming the file otherwise."""
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise ToolError(f"{path}: 'stamp_ns' must be one integer, got {value.dtype} {value.shape}")
    return int(value)


def _text(npz: np.lib.npyio.NpzFile, key: str, path: Path, ndim: int) -> np.ndarray:
    """``npz[key]`` as a unicode array of ``ndim`` dimensions; ToolError naming the file and key otherwise."""
    value = npz[key]
    if value.ndim != ndim or value.dtype.kind != "U":
        what = "one string" if ndim == 0 else "a 1-D array of strings"
        raise ToolError(f"{path}: '{key}' must be {what} (numpy unicode), got {value.dtype} {value.shape}")
    return value


def _read_info(npz: np.lib.npyio.NpzFile, path: Path) -> GridInfo:
    """The GridInfo keys a grid file holds; ToolError naming the file and key when malformed."""
    present = set(npz.files)
    names = None
    if "class_names" in present:
        names = tuple(str(n) for n in _text(npz, "class_names", path, ndim=1))
        if names != CLASS_NAMES:
            count = f"{len(names)} names, expected {len(CLASS_NAMES)}, one per label 0..{len(CLASS_NAMES) - 1}"
            differ = next((f"label {i} is '{a}', expected '{b}'"
                           for i, (a, b) in enumerate(zip(names, CLASS_NAMES)) if a != b), count)
            raise ToolError(f"{path}: 'class_names' are not the Occ3D classes ({differ}); this package reads "
                            "Occ3D labels only")
    source, frame_id = (str(_text(npz, key, path, ndim=0)) if key in present else None
                        for key in ("source", "frame_id"))
    stamp = _stamp_ns(npz["stamp_ns"], path) if "stamp_ns" in present else None
    return GridInfo(source=source, frame_id=frame_id, stamp_ns=stamp, class_names=names)


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
    return GridPose(_stamp_ns(stamp, path), ego.astype(np.float64), lidar.astype(np.float64))


def write_grid_file(path: str | Path, labels: np.ndarray, info: GridInfo = GridInfo(),
                    **extra: np.ndarray | int) -> None:
    """Write uint8 (X, Y, Z) ``labels`` as ``semantics``, the known fields of ``info`` and ``extra`` arrays to
    ``path`` atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype != np.uint8:
        raise ValueError(f"labels: expected a uint8 (X, Y, Z) array, got {labels.dtype} {labels.shape}")
    fields = info.arrays()
    both = sorted(fields.keys() & extra.keys())
    if both:
        raise ValueError(f"{', '.join(both)}: given both in info and as extra arrays")
    with atomic_output(path) as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, semantics=labels, **fields, **extra)
