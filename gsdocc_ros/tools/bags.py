"""ROS 2 bags without rosbag2: the message type store, a checked reader and atomic bag output, shared by tools.

The bags are written and read with `rosbags`. Its ``ROS2_KILTED`` type store is used: its definitions of the
standard types these tools write (sensor_msgs CompressedImage, CameraInfo, PointCloud2, tf2_msgs TFMessage,
std_msgs String, rosgraph_msgs Clock) give the same RIHS01 type hashes as the Kilted message packages installed
beside rclpy (test/tools/test_nuscenes_to_bag.py compares them with share/<pkg>/msg/<Type>.json), so a bag says
exactly which types a Kilted ``ros2 bag play`` will publish. This package's own messages (msg/*.msg, e.g.
gsdocc_ros/msg/SemanticVoxelGrid) are registered on top.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from gsdocc_ros.tools.cli import ToolError
from gsdocc_ros.tools.grid_files import refuse_existing

PACKAGE = "gsdocc_ros"
TYPE_STORE = Stores.ROS2_KILTED
"""rosbags type store of the standard messages; same type hashes as the installed Kilted packages."""


def project_msg_dir() -> Path | None:
    """Folder of this package's .msg files: msg/ of a source checkout, else share/gsdocc_ros/msg of an install."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(prefix) / "share" / PACKAGE / "msg" for prefix in prefixes]
    return next((path for path in candidates if any(path.glob("*.msg"))), None)


@lru_cache(maxsize=1)
def bag_typestore() -> Typestore:
    """The Kilted type store with this package's messages registered (built once per process)."""
    store = get_typestore(TYPE_STORE)
    msg_dir = project_msg_dir()
    if msg_dir is not None:
        for path in sorted(msg_dir.glob("*.msg")):
            store.register(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    return store


def open_bag(path: str | Path) -> Reader:
    """An opened rosbags Reader (close it) of the bag directory ``path`` (or the directory of its .mcap/.db3 file).

    ToolError, naming the path, when it is missing, not a bag, truncated or otherwise unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise ToolError(f"bag {path} does not exist")
    if path.is_file() and (path.parent / "metadata.yaml").is_file():
        path = path.parent
    if not (path / "metadata.yaml").is_file():
        raise ToolError(f"{path} is not a ROS 2 bag directory (no metadata.yaml)")
    reader = Reader(path)
    try:
        reader.open()
    except Exception as error:  # rosbags raises ReaderError, but also KeyError/ValueError on damaged metadata
        raise ToolError(f"bag {path} is unreadable or truncated: {error}") from None
    return reader


@contextlib.contextmanager
def atomic_bag(path: str | Path, force: bool) -> Iterator[Path]:
    """Yield a fresh path to write the bag directory ``path`` at; moved onto ``path`` only if the block succeeds.

    The bag is built in a hidden staging folder beside ``path`` (same file system) under its final name, so its
    storage file is named as a rosbag2 writer would name it; on error nothing is left behind. An existing ``path``
    is a ToolError unless ``force``, and is replaced only once the new bag is complete.
    """
    path = Path(path)
    refuse_existing([path], force)
    staging = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging / path.name
        if path.exists() or path.is_symlink():
            old = staging / "replaced"
            os.replace(path, old)  # keep the old bag until the new one is in place
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
