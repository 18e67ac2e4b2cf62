"""Convert nuScenes scenes into a ROS 2 bag (mcap or sqlite3) that `gsdocc play` or `ros2 bag play` replays.

  gsdocc nuscenes-to-bag --dataroot DIR --version v1.0-mini --out BAG [--scenes scene-0061 ...]
                         [--all-sweeps] [--lidar] [--storage mcap|sqlite3] [--ros-distro humble|iron|jazzy|kilted]
                         [--force]

Every header stamp and every bag time is the dataset timestamp (microseconds -> nanoseconds); messages are
written in time order. Topics:

  /tf_static                    tf2_msgs/msg/TFMessage      base_link -> CAM_* and LIDAR_TOP from calibrated_sensor,
                                                            at the start (again at a later scene's start only if
                                                            its calibration differs, e.g. another vehicle)
  /tf                           tf2_msgs/msg/TFMessage      map -> base_link, the ego pose of every sample_data
                                                            written, before the image or scan it serves
  /CAM_*/image_rect_compressed  sensor_msgs/msg/CompressedImage  the original JPEG bytes (no re-encoding),
                                                            format "jpeg", frame_id CAM_*
  /CAM_*/camera_info            sensor_msgs/msg/CameraInfo  K, R = I, P = [K | 0], plumb_bob with D = 0 (nuScenes
                                                            images are already rectified), image size
  /LIDAR_TOP                    sensor_msgs/msg/PointCloud2 with --lidar: x, y, z, intensity, ring, all float32
                                                            (the .pcd.bin bytes unchanged), frame_id LIDAR_TOP
  /gsdocc/scene                 std_msgs/msg/String         scene name, at the scene's first stamp
  /gsdocc/sample_token          std_msgs/msg/String         sample token of each keyframe (see below)

Sample tokens: each keyframe's token is written on /gsdocc/sample_token with the keyframe's CAM_FRONT image
stamp as bag time, just before that image. A keyframe's token is therefore recovered from the bag by the
CAM_FRONT stamp: `gsdocc record --bag BAG` names each grid (stamped with its CAM_FRONT stamp) by the token
written at that bag time. Keyframes only (2 Hz) by default; --all-sweeps adds every 12 Hz camera
sweep (and the 20 Hz LiDAR sweeps with --lidar). Offered QoS recorded in the bag: reliable and volatile, with
/tf_static reliable and transient-local (latched), so a replay reaches reliable and best-effort subscribers.
The bag is built under a hidden name beside BAG and renamed when complete; an existing BAG needs --force.

Bag format: --ros-distro writes what that distribution's rosbag2 writes: metadata.yaml version (humble 5, iron 7,
jazzy and kilted 9) with only the fields of that version (custom_data from iron, type_description_hash from iron,
ros_distro from jazzy), offered_qos_profiles as a YAML string (humble, iron) or a YAML list (jazzy, kilted), the
storage file BAG/<name>_0.mcap or _0.db3, and the message definitions of that distribution. The default, humble,
is the format every supported distribution plays; a jazzy or kilted bag does not play on humble or iron.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin
from tqdm import tqdm

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA
from gsdocc_ros.tools.bags import DEFAULT_DISTRO, DISTROS, RosDistro, atomic_bag, bag_typestore, bag_writer
from gsdocc_ros.tools.cli import ToolError
from gsdocc_ros.tools.grid_files import refuse_existing

VERB = "nuscenes-to-bag"
LIDAR_CHANNEL = "LIDAR_TOP"
MAP_FRAME = "map"
EGO_FRAME = "base_link"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
SCENE_TOPIC = "/gsdocc/scene"
SAMPLE_TOKEN_TOPIC = "/gsdocc/sample_token"
LIDAR_TOPIC = f"/{LIDAR_CHANNEL}"
LIDAR_FIELDS: tuple[str, ...] = ("x", "y", "z", "intensity", "ring")
"""Float32 fields of each point of a nuScenes .pcd.bin file, in file order."""
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

TF_TYPE = "tf2_msgs/msg/TFMessage"
STRING_TYPE = "std_msgs/msg/String"
IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"


def image_topic(channel: str) -> str:
    """Compressed-image topic of a camera channel (the node's default image_topic_format)."""
    return f"/{channel}/image_rect_compressed"


def camera_info_topic(channel: str) -> str:
    """CameraInfo topic of a camera channel (the node's default camera_info_topic_format)."""
    return f"/{channel}/camera_info"


class Rank(IntEnum):
    """Write order of messages sharing one bag time: latched calibration and poses come before the data."""

    TF_STATIC = 0
    SCENE = 1
    TF = 2
    SAMPLE_TOKEN = 3
    CAMERA_INFO = 4
    DATA = 5


@dataclass(frozen=True)
class Event:
    """One message to write: bag time, order among equal times, topic, and a builder of the message."""

    stamp_ns: int
    rank: Rank
    seq: int
    """Planning order, the last tie-breaker (keeps the plan deterministic)."""
    topic: str
    build: Callable[[], Any]
    """Returns the rosbags message; called at write time so file contents are read one at a time."""


def write_order(events: Sequence[Event]) -> list[Event]:
    """``events`` in write order: bag time, then rank, then planning order."""
    return sorted(events, key=lambda e: (e.stamp_ns, e.rank, e.seq))


def _qos(durability: QosDurability, depth: int) -> Qos:
    """A reliable keep-last QoS profile as rosbags records it in the bag's metadata."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


def _stamp_ns(timestamp_us: int) -> int:
    """A nuScenes microsecond timestamp in nanoseconds."""
    return int(timestamp_us) * 1000


class MessageFactory:
    """Builds the rosbags messages of the bag from nuScenes records (type store classes, exact values).

    ``dataroot`` resolves the records' file names; without it only the builders that take values and bytes
    (header ... compressed_image, pinhole_info) are usable, as for the synthetic bag of `gsdocc demo`. The
    message classes are those of ``distro``'s type store.
    """

    def __init__(self, dataroot: Path | None = None, distro: RosDistro = DEFAULT_DISTRO) -> None:
        self.dataroot = dataroot
        self.store = bag_typestore(distro)
        self.types = self.store.types

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """std_msgs/Header at ``stamp_ns``."""
        time = self.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return self.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def transform(self, stamp_ns: int, parent: str, child: str, translation: Sequence[float],
                  rotation_wxyz: Sequence[float]) -> Any:
        """geometry_msgs/TransformStamped parent -> child from a nuScenes translation and (w, x, y, z) rotation."""
        t = self.types
        w, x, y, z = (float(v) for v in rotation_wxyz)
        return t["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp_ns, parent),
            child_frame_id=child,
            transform=t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](*(float(v) for v in translation)),
                rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
            ),
        )

    def tf_message(self, transforms: list[Any]) -> Any:
        """tf2_msgs/TFMessage of ``transforms``."""
        return self.types[TF_TYPE](transforms=transforms)

    def string(self, data: str) -> Any:
        """std_msgs/String."""
        return self.types[STRING_TYPE](data=data)

    def read(self, filename: str) -> bytes:
        """Bytes of a dataset file, ToolError naming it when it cannot be read."""
        path = self.dataroot / filename
        try:
            return path.read_bytes()
        except OSError as error:
            raise ToolError(f"cannot read {path}: {error.strerror}") from None

    def compressed_image(self, stamp_ns: int, frame_id: str, data: bytes, fmt: str) -> Any:
        """sensor_msgs/CompressedImage holding the encoded bytes ``data`` unchanged (``fmt``: jpeg, png)."""
        return self.types[IMAGE_TYPE](header=self.header(stamp_ns, frame_id), format=fmt,
                                      data=np.frombuffer(data, dtype=np.uint8))

    def image(self, record: dict, channel: str) -> Any:
        """sensor_msgs/CompressedImage holding the sample_data's file bytes unchanged."""
        fmt = "jpeg" if record["fileformat"].lower() in ("jpg", "jpeg") else record["fileformat"].lower()
        return self.compressed_image(_stamp_ns(record["timestamp"]), channel, self.read(record["filename"]), fmt)

    def pinhole_info(self, stamp_ns: int, frame_id: str, intrinsic: Sequence[Sequence[float]], height: int,
                     width: int) -> Any:
        """sensor_msgs/CameraInfo of a rectified pinhole image: K, R = I, P = [K | 0], zero plumb_bob D."""
        k = np.asarray(intrinsic, dtype=np.float64)  # (3, 3)
        p = np.concatenate([k, np.zeros((3, 1))], axis=1)  # (3, 4)
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                               do_rectify=False)
        return self.types[INFO_TYPE](
            header=self.header(stamp_ns, frame_id), height=int(height), width=int(width),
            distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(9), r=np.eye(3).reshape(9), p=p.reshape(12),
            binning_x=0, binning_y=0, roi=roi,
        )

    def camera_info(self, record: dict, channel: str, intrinsic: Sequence[Sequence[float]]) -> Any:
        """sensor_msgs/CameraInfo of a rectified nuScenes image (see pinhole_info)."""
        return self.pinhole_info(_stamp_ns(record["timestamp"]), channel, intrinsic, record["height"],
                                 record["width"])

    def point_cloud(self, record: dict) -> Any:
        """sensor_msgs/PointCloud2 of a LiDAR .pcd.bin (float32 x, y, z, intensity, ring per point), bytes unchanged."""
        raw = self.read(record["filename"])
        point_step = 4 * len(LIDAR_FIELDS)
        if len(raw) % point_step:
            raise ToolError(f"{self.dataroot / record['filename']}: {len(raw)} bytes is not a whole number of "
                            f"{point_step}-byte points (x, y, z, intensity, ring float32)")
        field = self.types["sensor_msgs/msg/PointField"]
        fields = [field(name=name, offset=4 * i, datatype=field.FLOAT32, count=1) for i, name in enumerate(LIDAR_FIELDS)]
        count = len(raw) // point_step
        return self.types[CLOUD_TYPE](
            header=self.header(_stamp_ns(record["timestamp"]), LIDAR_CHANNEL), height=1, width=count,
            fields=fields, is_bigendian=False, point_step=point_step, row_step=point_step * count,
            data=np.frombuffer(raw, dtype=np.uint8), is_dense=True,
        )


def load_nuscenes(dataroot: Path, version: str) -> Any:
    """nuscenes-devkit's NuScenes for ``version`` under ``dataroot``; ToolError naming what is missing."""
    if not dataroot.is_dir():
        raise ToolError(f"--dataroot {dataroot} is not a directory")
    if not (dataroot / version).is_dir():
        found = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        raise ToolError(f"no nuScenes tables {dataroot / version} (check --version; versions under --dataroot: "
                        f"{', '.join(found) or 'none'})")
    from nuscenes.nuscenes import NuScenes

    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except (AssertionError, OSError, KeyError, IndexError, ValueError) as error:
        raise ToolError(f"cannot load nuScenes {version} from {dataroot}: {error!r}") from None


def select_scenes(nusc: Any, names: Sequence[str] | None) -> list[dict]:
    """The scene records named (all scenes, by name, when None); ToolError listing unknown names."""
    by_name = {scene["name"]: scene for scene in nusc.scene}
    if not names:
        return [by_name[name] for name in sorted(by_name)]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        shown = ", ".join(sorted(by_name)[:12]) + (" ..." if len(by_name) > 12 else "")
        raise ToolError(f"scenes not in {nusc.version}: {', '.join(unknown)} (available: {shown})")
    return [by_name[name] for name in dict.fromkeys(names)]


def first_record(nusc: Any, scene: dict, channel: str) -> dict:
    """The sample_data record of ``channel`` at the scene's first keyframe; ToolError when there is none."""
    first = nusc.get("sample", scene["first_sample_token"])
    if channel not in first["data"]:
        raise ToolError(f"{scene['name']}: its first sample has no {channel} data")
    return nusc.get("sample_data", first["data"][channel])


def channel_records(nusc: Any, scene: dict, channel: str, all_sweeps: bool) -> list[dict]:
    """The scene's sample_data records of ``channel`` in time order: keyframes, or every sweep with ``all_sweeps``.

    Walks sample_data.next from the first keyframe while the records belong to this scene.
    """
    records, token = [], first_record(nusc, scene, channel)["token"]
    while token:
        record = nusc.get("sample_data", token)
        if nusc.get("sample", record["sample_token"])["scene_token"] != scene["token"]:
            break
        if all_sweeps or record["is_key_frame"]:
            records.append(record)
        token = record["next"]
    return records


class BagPlan:
    """All messages of the bag as time-ordered events, built from the selected scenes before anything is written."""

    def __init__(self, nusc: Any, factory: MessageFactory, all_sweeps: bool, lidar: bool) -> None:
        self.nusc, self.factory = nusc, factory
        self.all_sweeps, self.lidar = all_sweeps, lidar
        self.events: list[Event] = []
        self.files: list[str] = []
        """Dataset files the bag embeds (checked to exist before writing)."""
        self.keyframes = 0
        self._static: tuple | None = None

    def _add(self, stamp_ns: int, rank: Rank, topic: str, build: Callable[[], Any]) -> None:
        self.events.append(Event(stamp_ns, rank, len(self.events), topic, build))

    def add_scene(self, scene: dict) -> None:
        """Plan one scene: its static calibration, name, and per sample_data pose plus data messages."""
        channels = list(CAMERA_NAMES) + ([LIDAR_CHANNEL] if self.lidar else [])
        records = {ch: channel_records(self.nusc, scene, ch, self.all_sweeps) for ch in channels}
        start_ns = min(_stamp_ns(r["timestamp"]) for recs in records.values() for r in recs)
        self._add_static(scene, start_ns)
        self._add(start_ns, Rank.SCENE, SCENE_TOPIC, lambda: self.factory.string(scene["name"]))
        pose_stamps: set[int] = set()
        for channel, recs in records.items():
            for record in recs:
                self._add_record(channel, record, pose_stamps)

    def _add_static(self, scene: dict, stamp_ns: int) -> None:
        """Plan /tf_static (base_link -> each sensor) unless the previous scene had the same calibration."""
        calibs = []
        for channel in (*CAMERA_NAMES, LIDAR_CHANNEL):
            record = first_record(self.nusc, scene, channel)
            cs = self.nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
            calibs.append((channel, tuple(cs["translation"]), tuple(cs["rotation"])))
        static = tuple(calibs)
        if static == self._static:
            return
        self._static = static
        f = self.factory
        self._add(stamp_ns, Rank.TF_STATIC, TF_STATIC_TOPIC, lambda: f.tf_message(
            [f.transform(stamp_ns, EGO_FRAME, ch, t, q) for ch, t, q in static]))

    def _add_record(self, channel: str, record: dict, pose_stamps: set[int]) -> None:
        """Plan map -> base_link at the record's ego pose (once per pose stamp), then the record's messages."""
        f, stamp = self.factory, _stamp_ns(record["timestamp"])
        ego = self.nusc.get("ego_pose", record["ego_pose_token"])
        ego_stamp = _stamp_ns(ego["timestamp"])
        if ego_stamp not in pose_stamps:
            pose_stamps.add(ego_stamp)
            self._add(min(ego_stamp, stamp), Rank.TF, TF_TOPIC, lambda: f.tf_message(
                [f.transform(ego_stamp, MAP_FRAME, EGO_FRAME, ego["translation"], ego["rotation"])]))
        self.files.append(record["filename"])
        if channel == LIDAR_CHANNEL:
            self._add(stamp, Rank.DATA, LIDAR_TOPIC, lambda: f.point_cloud(record))
            return
        if channel == KEY_CAMERA and record["is_key_frame"]:
            self.keyframes += 1
            self._add(stamp, Rank.SAMPLE_TOKEN, SAMPLE_TOKEN_TOPIC, lambda: f.string(record["sample_token"]))
        intrinsic = self.nusc.get("calibrated_sensor", record["calibrated_sensor_token"])["camera_intrinsic"]
        if np.shape(intrinsic) != (3, 3):
            raise ToolError(f"calibrated_sensor {record['calibrated_sensor_token']} of {channel}: camera_intrinsic "
                            f"is not 3x3")
        self._add(stamp, Rank.CAMERA_INFO, camera_info_topic(channel),
                  lambda: f.camera_info(record, channel, intrinsic))
        self._add(stamp, Rank.DATA, image_topic(channel), lambda: f.image(record, channel))

    def ordered(self) -> list[Event]:
        """The events in write order (write_order)."""
        return write_order(self.events)

    def check_files(self, dataroot: Path) -> None:
        """ToolError naming the first missing dataset file (and how many are missing), before any writing."""
        missing = [name for name in self.files if not (dataroot / name).is_file()]
        if missing:
            raise ToolError(f"{len(missing)} dataset file(s) missing, e.g. {dataroot / missing[0]}")


TOPIC_TYPES: dict[str, str] = {
    TF_STATIC_TOPIC: TF_TYPE, TF_TOPIC: TF_TYPE, SCENE_TOPIC: STRING_TYPE, SAMPLE_TOKEN_TOPIC: STRING_TYPE,
    LIDAR_TOPIC: CLOUD_TYPE,
    **{image_topic(ch): IMAGE_TYPE for ch in CAMERA_NAMES}, **{camera_info_topic(ch): INFO_TYPE for ch in CAMERA_NAMES},
}
"""Message type of every topic the converter can write."""


def write_bag(path: Path, events: Sequence[Event], storage: StoragePlugin, custom: dict[str, str],
              progress: bool = True, distro: RosDistro = DEFAULT_DISTRO) -> Counter:
    """Write ``events`` (already ordered) as a new bag at ``path`` in ``distro``'s format; messages per topic."""
    store = bag_typestore(distro)
    counts: Counter = Counter()
    with bag_writer(path, distro, storage) as writer:
        for key, value in custom.items():
            writer.set_custom_data(key, value)
        connections = {}
        for topic in dict.fromkeys(e.topic for e in events):
            latched = topic == TF_STATIC_TOPIC
            qos = _qos(QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE, 1 if latched else 10)
            connections[topic] = writer.add_connection(topic, TOPIC_TYPES[topic], typestore=store,
                                                       offered_qos_profiles=[qos])
        for event in tqdm(events, desc="writing", unit="msg", disable=not progress):
            data = store.serialize_cdr(event.build(), TOPIC_TYPES[event.topic])
            writer.write(connections[event.topic], event.stamp_ns, data)
            counts[event.topic] += 1
    return counts


@dataclass
class Conversion:
    """What a conversion wrote."""

    counts: Counter
    """Messages per topic."""
    keyframes: int
    scenes: list[str]


def convert(dataroot: Path, version: str, out: Path, scenes: Sequence[str] | None = None, all_sweeps: bool = False,
            lidar: bool = False, storage: str = "mcap", force: bool = False, progress: bool = True,
            ros_distro: str = DEFAULT_DISTRO.name) -> Conversion:
    """Convert the named scenes (all when None) of a nuScenes version to the new bag directory ``out``, in the bag
    format of ``ros_distro``."""
    if storage not in STORAGES:
        raise ToolError(f"--storage {storage!r} unknown; choose from {', '.join(STORAGES)}")
    if ros_distro not in DISTROS:
        raise ToolError(f"--ros-distro {ros_distro!r} unknown; choose from {', '.join(DISTROS)}")
    distro = DISTROS[ros_distro]
    refuse_existing([out], force)
    nusc = load_nuscenes(dataroot, version)
    selected = select_scenes(nusc, scenes)
    plan = BagPlan(nusc, MessageFactory(dataroot, distro), all_sweeps, lidar)
    try:
        for scene in tqdm(selected, desc="planning", unit="scene", disable=not progress):
            plan.add_scene(scene)
    except KeyError as error:  # a token that a table does not hold
        raise ToolError(f"nuScenes {version} tables are inconsistent: no record {error}") from None
    plan.check_files(dataroot)
    names = [scene["name"] for scene in selected]
    custom = {"gsdocc.source": f"nuScenes {version}", "gsdocc.scenes": " ".join(names),
              "gsdocc.sweeps": "all" if all_sweeps else "keyframes"}
    with atomic_bag(out, force) as staging:
        counts = write_bag(staging, plan.ordered(), STORAGES[storage], custom, progress, distro)
    return Conversion(counts=counts, keyframes=plan.keyframes, scenes=names)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc nuscenes-to-bag``."""
    parser = subparsers.add_parser(VERB, help="convert nuScenes scenes to a ROS 2 bag (JPEG images, tf, tokens)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes root (holds samples/ and VERSION/)")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="bag directory to create")
    parser.add_argument("--scenes", nargs="+", help="scene names to convert (default: every scene of the version)")
    parser.add_argument("--all-sweeps", action="store_true", help="write every 12 Hz camera sweep, not only keyframes")
    parser.add_argument("--lidar", action="store_true", help=f"also write {LIDAR_TOPIC} as sensor_msgs/PointCloud2")
    parser.add_argument("--storage", choices=tuple(STORAGES), default="mcap", help="bag storage (default: %(default)s)")
    parser.add_argument("--ros-distro", choices=tuple(DISTROS), default=DEFAULT_DISTRO.name,
                        help="write the bag format and message definitions of this distribution's rosbag2 (default: "
                             "%(default)s, the format every supported distribution plays)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing bag at --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc nuscenes-to-bag``; returns 0, or raises ToolError (exit 2) naming what is wrong."""
    result = convert(args.dataroot, args.version, args.out, args.scenes, args.all_sweeps, args.lidar, args.storage,
                     args.force, ros_distro=args.ros_distro)
    for topic in sorted(result.counts):
        print(f"  {topic}: {result.counts[topic]}")
    print(f"wrote {sum(result.counts.values())} messages on {len(result.counts)} topics ({len(result.scenes)} "
          f"scenes, {result.keyframes} keyframes) to {args.out}")
    return 0
