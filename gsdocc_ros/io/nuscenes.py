"""nuScenes, read with nuscenes-devkit: tables loaded with clear errors, scenes selected, and planned as bag messages.

`convert` is what `gsdocc nuscenes-to-bag` runs: every sample_data of the chosen scenes becomes time-ordered bag
events (pose, calibration, image, camera info, optional LiDAR, sample token), checked against the dataset files
before anything is written, then written in the format of one ROS 2 distribution.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import (EGO_FRAME, LIDAR_CHANNEL, LIDAR_TOPIC, MAP_FRAME, SAMPLE_TOKEN_TOPIC,
                                        SCENE_TOPIC, STORAGES, TF_STATIC_TOPIC, TF_TOPIC, Event, MessageFactory, Rank,
                                        camera_info_topic, image_topic, us_to_ns, write_bag, write_order)
from gsdocc_ros.io.bags import DEFAULT_DISTRO, DISTROS
from gsdocc_ros.io.output import atomic_directory, refuse_existing
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA

NUSCENES_TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
                   "scene", "sample", "sample_data", "sample_annotation", "map")
"""The tables nuscenes-devkit loads, each from <dataroot>/<version>/<table>.json."""


def dataroot_layout(tables: tuple[str, ...] = NUSCENES_TABLES) -> str:
    """What a nuScenes dataroot must hold for ``tables``: the sentence every missing-file message ends with."""
    return (f"a nuScenes dataroot holds <dataroot>/<version>/<table>.json for each of {', '.join(tables)}, "
            "and the samples/ and sweeps/ files those tables name")


def check_tables(dataroot: Path, version: str, tables: tuple[str, ...] = NUSCENES_TABLES) -> None:
    """ToolError unless ``dataroot`` holds each of ``tables`` for ``version`` (by default all the devkit loads),
    naming the missing file (full path) or the versions it does hold."""
    if not dataroot.is_dir():
        raise ToolError(f"--dataroot {dataroot} is not a directory")
    if not (dataroot / version).is_dir():
        found = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        raise ToolError(f"nuScenes tables {dataroot / version} do not exist (check --version and --dataroot; "
                        f"versions under --dataroot: {', '.join(found) or 'none'})")
    missing = [dataroot / version / f"{name}.json" for name in tables
               if not (dataroot / version / f"{name}.json").is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ToolError(f"nuScenes table {missing[0]} is missing{more}; {dataroot_layout(tables)}")


def _unreadable_table(dataroot: Path, version: str) -> str:
    """The first table of ``version`` that is not valid JSON, as "PATH (reason)"; "" when all parse."""
    for name in NUSCENES_TABLES:
        path = dataroot / version / f"{name}.json"
        try:
            json.loads(path.read_bytes())
        except ValueError as error:
            return f"{path} ({error})"
    return ""


def load_nuscenes(dataroot: Path, version: str, verbose: bool = False) -> Any:
    """nuscenes-devkit's NuScenes for ``version`` under ``dataroot``; ToolError naming what is missing or broken."""
    check_tables(dataroot, version)
    from nuscenes.nuscenes import NuScenes

    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=verbose)
    except OSError as error:
        raise ToolError(f"cannot load nuScenes {version} from {dataroot}: {error.filename}: "
                        f"{error.strerror or error}") from None
    except ValueError as error:
        raise ToolError(f"cannot load nuScenes {version} from {dataroot}: not valid JSON: "
                        f"{_unreadable_table(dataroot, version) or error}; copy the table again from the download"
                        ) from None
    except (AssertionError, KeyError, IndexError) as error:
        raise ToolError(f"cannot load nuScenes {version} from {dataroot}: the tables do not fit together "
                        f"({type(error).__name__}: {error}); {dataroot_layout()}") from None


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
        start_ns = min(us_to_ns(r["timestamp"]) for recs in records.values() for r in recs)
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
        f, stamp = self.factory, us_to_ns(record["timestamp"])
        ego = self.nusc.get("ego_pose", record["ego_pose_token"])
        ego_stamp = us_to_ns(ego["timestamp"])
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
            raise ToolError(f"{len(missing)} dataset file(s) missing, e.g. {dataroot / missing[0]}; the tables name "
                            f"them under {dataroot}: copy samples/ and sweeps/ from the same nuScenes download")


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
    folder = next(parent for parent in out.absolute().parents if parent.exists())
    if not folder.is_dir():
        raise ToolError(f"--out {out}: {folder} is a file, not a folder; choose another --out")
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
    try:
        with atomic_directory(out, force) as staging:
            counts = write_bag(staging, plan.ordered(), STORAGES[storage], custom, progress, distro)
    except OSError as error:  # a dataset file unreadable, the disk full: the staging folder is already removed
        raise ToolError(f"nothing written to {out}: {error.strerror or error}: {error.filename}") from None
    return Conversion(counts=counts, keyframes=plan.keyframes, scenes=names)




DEFAULT_SPLIT = {"v1.0-mini": "mini_val", "v1.0-trainval": "val", "v1.0-test": "test"}
"""The split `run` scores when --split is not given, per nuScenes version."""


def record_pose(record: dict) -> np.ndarray:
    """float64 (4, 4) transform of a nuScenes ego_pose or calibrated_sensor record (translation, rotation wxyz)."""
    from gsdocc_ros.pipeline.geometry import make_transform, quaternion_wxyz_to_matrix

    return make_transform(quaternion_wxyz_to_matrix(record["rotation"]), record["translation"])


def nuscenes_scene_poses(nusc: Any, channel: str) -> Callable[[str], tuple[list[str], np.ndarray, np.ndarray]]:
    """Scene poses from the nuScenes tables: each keyframe's ego pose at its ``channel`` sample, LIDAR_TOP mounts."""
    def poses(scene: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        ((_, tokens),) = scene_samples(nusc, [scene])
        ego, mounts = [], []
        for token in tokens:
            data = nusc.get("sample", token)["data"]
            ego.append(record_pose(nusc.get("ego_pose", nusc.get("sample_data", data[channel])["ego_pose_token"])))
            lidar = nusc.get("sample_data", data["LIDAR_TOP"])
            mounts.append(record_pose(nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])))
        return list(tokens), np.array(ego), np.array(mounts)
    return poses


@dataclass
class KeyframeInputs:
    """What the runner needs for one nuScenes keyframe."""

    frames: list
    """CameraFrame per camera, CAMERA_NAMES order, extrinsics to the CAM_FRONT ego pose."""
    sample_ego2global: np.ndarray
    """float64 (4, 4) LIDAR_TOP keyframe ego pose: the pose the history warp uses (official)."""
    stamp_ns: int
    """CAM_FRONT stamp, nanoseconds."""
    key_ego2global: np.ndarray
    """float64 (4, 4) CAM_FRONT ego pose: the frame of the predicted grid, saved with it as ``ego_pose``."""
    lidar_to_ego: np.ndarray
    """float64 (4, 4) LIDAR_TOP mounting, saved with the grid for its RayIoU origins."""


def keyframe_inputs(nusc: Any, sample_token: str) -> KeyframeInputs:
    """Camera frames of one nuScenes sample in the key-ego convention (gsdocc_model.md section 1)."""
    from PIL import Image

    from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA, CameraFrame
    from gsdocc_ros.pipeline.geometry import camera_to_key_ego

    sample = nusc.get("sample", sample_token)
    cams = {name: nusc.get("sample_data", sample["data"][name]) for name in CAMERA_NAMES}
    key_pose = record_pose(nusc.get("ego_pose", cams[KEY_CAMERA]["ego_pose_token"]))
    frames = []
    for name in CAMERA_NAMES:
        data = cams[name]
        sensor = nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
        path = Path(nusc.dataroot) / data["filename"]
        frames.append(CameraFrame(
            name=name,
            image=np.asarray(Image.open(path).convert("RGB")),
            intrinsics=np.asarray(sensor["camera_intrinsic"], dtype=np.float64),
            cam_to_ego=camera_to_key_ego(record_pose(sensor),
                                         record_pose(nusc.get("ego_pose", data["ego_pose_token"])), key_pose),
            stamp_ns=int(data["timestamp"]) * 1000,
        ))
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    return KeyframeInputs(frames, record_pose(nusc.get("ego_pose", lidar["ego_pose_token"])),
                          int(cams[KEY_CAMERA]["timestamp"]) * 1000, key_pose,
                          record_pose(nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])))


def scene_samples(nusc: Any, scene_names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(scene, sample tokens in time order) for each named scene, walking sample.next from the first."""
    out = []
    for scene in select_scenes(nusc, scene_names):
        tokens, token = [], scene["first_sample_token"]
        while token:
            tokens.append(token)
            token = nusc.get("sample", token)["next"]
        out.append((scene["name"], tokens))
    return out
