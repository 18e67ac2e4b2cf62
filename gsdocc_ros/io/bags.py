"""ROS 2 bags without rosbag2: the distributions' bag formats, type stores, a checked reader and atomic output.

The bags are written and read with `rosbags`. A bag is written in the format of one ROS 2 distribution
(DISTROS): the metadata.yaml its rosbag2 writes (version, fields, QoS encoding), storage files named
``<bag>_0.mcap`` / ``<bag>_0.db3``, and the message definitions of that distribution's rosbags type store. The
default, Humble's format, is read by the rosbag2 of every supported distribution; a Jazzy or Kilted bag
(offered_qos_profiles as a YAML list) is not read by Humble's or Iron's. The definitions of the standard types
these tools write (sensor_msgs CompressedImage, CameraInfo, PointCloud2, tf2_msgs TFMessage, std_msgs String,
rosgraph_msgs Clock) are the same in the four stores, and the Kilted store gives the same RIHS01 type hashes as
the Kilted message packages installed beside rclpy (test/tools/test_nuscenes_to_bag.py compares them with
share/<pkg>/msg/<Type>.json). This package's own messages (msg/*.msg, e.g. gsdocc_ros/msg/SemanticVoxelGrid)
are registered on top.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from gsdocc_ros.errors import ToolError

PACKAGE = "gsdocc_ros"

QOS_LIST_SINCE = 9
"""Metadata version from which offered_qos_profiles is a YAML list with policy names; before, a YAML string
holding that list with the rmw enum numbers (rosbag2_storage yaml.hpp and qos.cpp, jazzy branch)."""
BAG_FIELDS_SINCE: dict[str, int] = {"custom_data": 6, "ros_distro": 8}
"""Top-level metadata fields and the version from which rosbag2 reads them (yaml.hpp, iron and jazzy branches)."""
TOPIC_FIELDS_SINCE: dict[str, int] = {"type_description_hash": 7}
"""topic_metadata fields and the version from which rosbag2 reads them (yaml.hpp, iron branch)."""


@dataclass(frozen=True)
class RosDistro:
    """A ROS 2 distribution's bag format: what its rosbag2 writes, and the message definitions it embeds."""

    name: str
    """ROS_DISTRO value, written as metadata ros_distro where the format has that field."""
    metadata_version: int
    """The metadata version its rosbag2 writes (rosbag2_storage/bag_metadata.hpp on its branch)."""
    type_store: Stores
    """rosbags type store with that distribution's message definitions."""

    @property
    def qos_as_list(self) -> bool:
        """offered_qos_profiles as a YAML list with policy names (True) or a YAML string with enum numbers."""
        return self.metadata_version >= QOS_LIST_SINCE

    @property
    def writer_version(self) -> int:
        """The rosbags Writer version that encodes offered_qos_profiles the same way (9: list, 8: string)."""
        return 9 if self.qos_as_list else 8


DISTROS: dict[str, RosDistro] = {d.name: d for d in (
    RosDistro("humble", 5, Stores.ROS2_HUMBLE),
    RosDistro("iron", 7, Stores.ROS2_IRON),
    RosDistro("jazzy", 9, Stores.ROS2_JAZZY),
    RosDistro("kilted", 9, Stores.ROS2_KILTED),
)}
"""Bag format per supported distribution (rosbag2 0.15 humble, 0.22 iron, 0.26 jazzy, 0.32 kilted)."""
DEFAULT_DISTRO = DISTROS["humble"]
"""Humble's format: the later distributions' rosbag2 read version 5 metadata, Humble reads no later version."""


def project_msg_dir() -> Path | None:
    """Folder of this package's .msg files: msg/ of a source checkout, else share/gsdocc_ros/msg of an install."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(prefix) / "share" / PACKAGE / "msg" for prefix in prefixes]
    return next((path for path in candidates if any(path.glob("*.msg"))), None)


@lru_cache(maxsize=None)
def bag_typestore(distro: RosDistro = DEFAULT_DISTRO) -> Typestore:
    """The type store of ``distro`` with this package's messages registered (built once per process)."""
    store = get_typestore(distro.type_store)
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
def bag_writer(path: Path, distro: RosDistro, storage: StoragePlugin) -> Iterator[Writer]:
    """An open rosbags Writer of a new bag at ``path``, made ``distro``'s format once closed without error."""
    with Writer(path, version=distro.writer_version, storage_plugin=storage) as writer:
        yield writer
    conform_bag(path, distro)


def conform_bag(path: Path, distro: RosDistro) -> None:
    """Turn a bag that rosbags just wrote at ``path`` into what ``distro``'s rosbag2 writes.

    rosbags names its storage file ``<bag>.<ext>`` and writes metadata version 8 or 9 with every field it knows
    and ``ros_distro: rosbags``. rosbag2 names the first storage file ``<bag>_0.<ext>`` (SequentialWriter) and
    writes only the fields of its own version. So: rename the storage files, set the version, drop the fields
    that version lacks, and name the distribution in ros_distro where the format has it.
    """
    metadata_path = path / "metadata.yaml"
    document = yaml.safe_load(metadata_path.read_text())
    info = document["rosbag2_bagfile_information"]
    names = []
    for index, name in enumerate(info["relative_file_paths"]):
        renamed = f"{path.name}_{index}{name[len(path.name):]}"  # keeps the extension(s) rosbags gave it
        os.replace(path / name, path / renamed)
        names.append(renamed)
    info["relative_file_paths"] = names
    for entry, name in zip(info["files"], names):
        entry["path"] = name
    info["version"] = distro.metadata_version
    for field, since in BAG_FIELDS_SINCE.items():
        if distro.metadata_version < since:
            del info[field]
    if "ros_distro" in info:
        info["ros_distro"] = distro.name
    for topic in info["topics_with_message_count"]:
        for field, since in TOPIC_FIELDS_SINCE.items():
            if distro.metadata_version < since:
                del topic["topic_metadata"][field]
    metadata_path.write_text(yaml.safe_dump(document, sort_keys=False))
