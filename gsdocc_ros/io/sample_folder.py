"""The sample-data folder the test suite reads (../shared/data), rebuilt from a user's nuScenes and Occ3D download.

`build` is what `gsdocc sample-data` runs. It writes the layout of ../shared/data from the nuScenes tables, read as
plain JSON (the devkit would also load every annotation, which none of these files need):

  nuscenes_sample/scene-0061_ca9a282c/   calib.json, samples/<the 6 JPEGs and the LiDAR scan>, v1.0-test/*.json
                                         (the tables cut down to this one sample; the folder name is the tests')
  nuscenes_sample/scene-0003_fd842039/   calib.json (this keyframe and the next), samples/imgs/CAM_*.jpg,
                                         samples/LIDAR_TOP_<stamp>.bin; v1.0-trainval only
  nuscenes_sample/mini_val_poses/        poses.json: calibration and poses of every keyframe of scene-0103, -0916
  nuscenes_sample/LICENSE-nuScenes-TermsOfUse.txt   the dataroot's LICENSE
  occ3d_sample/labels.npz                Occ3D-nuScenes ground truth of one sample (gts/<scene>/<token>/)

A part whose sample or scene the chosen version does not hold is left out with one line saying which tests need it;
a missing table, or a file the tables name, is a ToolError. Files of ../shared/data that only record where the
data came from (mmdet3d pkl, BEVDet yaml, the READMEs) are not rebuilt: nothing reads them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.nuscenes import check_tables, record_pose
from gsdocc_ros.io.output import atomic_directory, refuse_existing
from gsdocc_ros.pipeline.frames import CAMERA_NAMES

TABLES = ("scene", "log", "sample", "sample_data", "calibrated_sensor", "ego_pose", "sensor", "category",
          "attribute", "visibility")
"""The tables read (all of them before anything is written)."""

CUT_TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "sample", "sample_data", "scene", "sensor",
              "visibility")
"""The tables written beside scene-0061's calib.json: cut to its sample, except sensor, category, attribute and
visibility, copied whole."""

LINKS = {"scene": ("first_sample_token", "last_sample_token"), "sample": ("prev", "next"),
         "sample_data": ("prev", "next")}
"""Fields that point outside a one-sample cut: dropped from the cut tables, as in ../shared/data."""

LIDAR = "LIDAR_TOP"
LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring_index")
CHANNELS = (*CAMERA_NAMES, LIDAR)
DECIMALS = 9
"""Matrices are written rounded to this many decimals (nanometres; the shared files use the same)."""

MINI_VAL_SCENES = ("scene-0103", "scene-0916")
"""The v1.0-mini val split, whose keyframe poses go to mini_val_poses/poses.json."""

OCC3D_TOKEN = "29796060110c4163b07f06eff4af0753"
"""The sample whose Occ3D ground truth is occ3d_sample/labels.npz."""

LICENSE_NAME = "LICENSE-nuScenes-TermsOfUse.txt"


@dataclass(frozen=True)
class Keyframe:
    """One six-camera keyframe folder of nuscenes_sample and where its files go."""

    folder: str
    token: str
    renamed: bool
    """True: files as samples/imgs/CAM_*.jpg and samples/LIDAR_TOP_<stamp>.bin, calib.json with this frame and the
    next (calibration only); False: nuScenes file names, one frame, the cut tables beside it."""
    needed_by: tuple[str, ...]
    """Test modules that read this folder (test_sample_data checks the list against test/)."""


SCENE_0061 = Keyframe("scene-0061_ca9a282c", "ca9a282c9e77460f8360f564131a8af5", False, (
    "test_ab_pairs", "test_bench", "test_camera_liveness", "test_conversions", "test_demo_picture", "test_eval",
    "test_export",
    "test_faults", "test_generic_rig", "test_geometry", "test_gsdocc", "test_host_sync", "test_image_decode",
    "test_nuscenes_to_bag", "test_node", "test_play", "test_qos", "test_render", "test_rig_fit", "test_runner",
    "test_stop", "test_sync", "test_synthetic_scene", "test_tf", "test_acceleration", "test_torch_preprocess",
    "test_view_transform", "deploy_data"))
SCENE_0003 = Keyframe("scene-0003_fd842039", "fd8420396768425eabec9bdddf7e64b6", True, (
    "test_acceleration", "test_bad_input", "test_bench", "test_preprocess", "test_render", "test_torch_preprocess",
    "test_view_transform", "deploy_data"))
KEYFRAMES = (SCENE_0061, SCENE_0003)
POSES_NEEDED_BY = ("test_node", "test_ray_metrics")
OCC3D_NEEDED_BY = ("test_ab_pairs", "test_bad_input", "test_bench", "test_conversions", "test_demo_picture",
                   "test_eval", "test_markers", "test_metrics", "test_point_cloud", "test_ray_metrics", "test_render")


def rounded(matrix: Any) -> list:
    """``matrix`` as nested lists of floats rounded to DECIMALS, for JSON."""
    return np.round(np.asarray(matrix, dtype=np.float64), DECIMALS).tolist()


class Tables:
    """The nuScenes tables of one version, read as plain JSON, with records by token and keyframes by sample."""

    def __init__(self, dataroot: Path, version: str) -> None:
        check_tables(dataroot, version, TABLES)
        self.dataroot, self.version = dataroot, version
        self.records: dict[str, list[dict]] = {name: self._read(name) for name in TABLES}
        self._by_token = {name: {r["token"]: r for r in records} for name, records in self.records.items()}
        sensors = {r["token"]: r["channel"] for r in self.records["sensor"]}
        self.channel = {r["token"]: sensors[r["sensor_token"]] for r in self.records["calibrated_sensor"]}
        self.keyframe_data: dict[str, dict[str, dict]] = {}
        """sample token -> channel -> the keyframe's sample_data record."""
        for record in self.records["sample_data"]:
            if record["is_key_frame"]:
                channel = self.channel[record["calibrated_sensor_token"]]
                self.keyframe_data.setdefault(record["sample_token"], {})[channel] = record

    def _read(self, name: str) -> list[dict]:
        """One table's records (check_tables has seen the file); ToolError naming the file when it is damaged."""
        path = self.dataroot / self.version / f"{name}.json"
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise ToolError(f"nuScenes table {path} is not valid JSON ({error}); unpack it again") from None

    def get(self, table: str, token: str) -> dict:
        """The ``table`` record of ``token``; ToolError when the tables do not hold it."""
        try:
            return self._by_token[table][token]
        except KeyError:
            raise ToolError(f"nuScenes {self.version} tables are inconsistent: no {table} record {token}") from None

    def has_sample(self, token: str) -> bool:
        """Whether this version holds the sample ``token``."""
        return token in self._by_token["sample"]

    def scene_of(self, sample: dict) -> dict:
        """The scene record of ``sample``."""
        return self.get("scene", sample["scene_token"])

    def log_name(self, scene: dict) -> str:
        """The log file name of ``scene`` (e.g. n015-2018-07-24-11-22-45+0800)."""
        return self.get("log", scene["log_token"])["logfile"]

    def channels(self, sample_token: str) -> dict[str, dict]:
        """The keyframe sample_data record of each of CHANNELS; ToolError naming the ones the sample lacks."""
        data = self.keyframe_data.get(sample_token, {})
        missing = [channel for channel in CHANNELS if channel not in data]
        if missing:
            raise ToolError(f"sample {sample_token} of {self.version} has no keyframe data for {', '.join(missing)}")
        return data

    def file(self, record: dict) -> Path:
        """The dataset file of a sample_data record; ToolError when the dataroot does not hold it."""
        path = self.dataroot / record["filename"]
        if not path.is_file():
            raise ToolError(f"{path} missing: the {self.version} tables name it; unpack the sensor blobs of "
                            f"{self.version} into {self.dataroot}")
        return path

    def poses(self, record: dict) -> tuple[np.ndarray, np.ndarray, dict]:
        """(ego2global at the record's time, sensor2ego, calibrated_sensor record) of a sample_data record."""
        sensor = self.get("calibrated_sensor", record["calibrated_sensor_token"])
        return record_pose(self.get("ego_pose", record["ego_pose_token"])), record_pose(sensor), sensor


def frame_record(tables: Tables, sample_token: str, files: dict[str, str] | None) -> dict:
    """The calib.json record of one keyframe: sample pose, LiDAR mounting and per camera K, mounting, pose, lidar2cam.

    ``files`` maps each channel to the file's path in the scene folder; None writes calibration only (image null).
    """
    sample = tables.get("sample", sample_token)
    data = tables.channels(sample_token)
    ego2global, lidar2ego, _ = tables.poses(data[LIDAR])
    record: dict[str, Any] = {"sample_token": sample_token, "timestamp_us": sample["timestamp"],
                              "ego2global": rounded(ego2global), "lidar2ego": rounded(lidar2ego)}
    if files is not None:
        record["lidar"] = {"file": files[LIDAR], "dtype": "float32", "fields": list(LIDAR_FIELDS)}
    cameras = {}
    for name in CAMERA_NAMES:
        camera = data[name]
        cam_ego2global, sensor2ego, sensor = tables.poses(camera)
        lidar2cam = np.linalg.inv(sensor2ego) @ np.linalg.inv(cam_ego2global) @ ego2global @ lidar2ego
        cameras[name] = {"image": files[name] if files is not None else None,
                         "original_name": Path(camera["filename"]).name,
                         "width": camera["width"], "height": camera["height"], "timestamp_us": camera["timestamp"],
                         "sample_data_token": camera["token"], "intrinsics": rounded(sensor["camera_intrinsic"]),
                         "sensor2ego": rounded(sensor2ego), "ego2global": rounded(cam_ego2global),
                         "lidar2cam": rounded(lidar2cam)}
    record["cameras"] = cameras
    return record


def keyframe_files(tables: Tables, keyframe: Keyframe) -> dict[str, tuple[Path, str]]:
    """Per channel: (dataset file, path in the scene folder) of ``keyframe``, every file checked to exist."""
    files = {}
    for channel, record in tables.channels(keyframe.token).items():
        source = tables.file(record)
        if not keyframe.renamed:
            files[channel] = (source, record["filename"])
        elif channel == LIDAR:
            files[channel] = (source, f"samples/{LIDAR}_{record['timestamp']}.bin")
        else:
            files[channel] = (source, f"samples/imgs/{channel}.jpg")
    return files


def cut_tables(tables: Tables, sample_token: str) -> dict[str, list[dict]]:
    """The CUT_TABLES reduced to one sample (its scene, the sample, its 7 keyframe records, their calibration and
    poses) in the tables' own record order, without the LINKS fields."""
    sample = tables.get("sample", sample_token)
    data = [tables.channels(sample_token)[channel] for channel in CHANNELS]
    keep = {"scene": {sample["scene_token"]}, "sample": {sample_token}, "sample_data": {r["token"] for r in data},
            "calibrated_sensor": {r["calibrated_sensor_token"] for r in data},
            "ego_pose": {r["ego_pose_token"] for r in data}}
    return {name: [{k: v for k, v in r.items() if k not in LINKS.get(name, ())} for r in tables.records[name]
                   if name not in keep or r["token"] in keep[name]] for name in CUT_TABLES}


def write_json(path: Path, value: Any, indent: int | str = 1) -> None:
    """Write ``value`` as JSON to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=indent) + "\n")


def write_keyframe(tables: Tables, keyframe: Keyframe, folder: Path) -> None:
    """Write one nuscenes_sample keyframe folder: its files, calib.json, and (nuScenes names) the cut tables."""
    files = keyframe_files(tables, keyframe)
    for source, name in files.values():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / name)
    sample = tables.get("sample", keyframe.token)
    scene = tables.scene_of(sample)
    head = {"dataset": f"nuScenes {tables.version}", "scene": scene["name"], "log": tables.log_name(scene)}
    frame = frame_record(tables, keyframe.token, {channel: name for channel, (_, name) in files.items()})
    if keyframe.renamed:
        frames = [dict(frame, images_available=True)]
        if sample["next"]:
            frames.append(dict(frame_record(tables, sample["next"], None), images_available=False))
        write_json(folder / "calib.json", {**head, "frames": frames})
    else:
        write_json(folder / "calib.json", {**head, **frame})
        for name, records in cut_tables(tables, keyframe.token).items():
            write_json(folder / "v1.0-test" / f"{name}.json", records, indent="\t")


def keyframe_poses(tables: Tables, sample_token: str) -> dict:
    """The poses.json record of one keyframe: sample pose, LiDAR mounting, per camera image name, K and poses."""
    frame = frame_record(tables, sample_token, None)
    lidar = tables.channels(sample_token)[LIDAR]
    cameras = {name: {"image_name": cam["original_name"], "timestamp_us": cam["timestamp_us"],
                      "intrinsics": cam["intrinsics"], "sensor2ego": cam["sensor2ego"],
                      "ego2global": cam["ego2global"]} for name, cam in frame["cameras"].items()}
    return {"sample_token": sample_token, "timestamp_us": frame["timestamp_us"],
            "lidar_name": Path(lidar["filename"]).name, "ego2global": frame["ego2global"],
            "lidar2ego": frame["lidar2ego"], "cameras": cameras}


def scene_poses(tables: Tables, names: tuple[str, ...]) -> dict | None:
    """poses.json of the named scenes (every keyframe in time order), or None when the version lacks one of them."""
    scenes = {scene["name"]: scene for scene in tables.records["scene"] if scene["name"] in names}
    if len(scenes) < len(names):
        return None
    samples: dict[str, list[dict]] = {}
    for sample in tables.records["sample"]:
        samples.setdefault(sample["scene_token"], []).append(sample)
    out = {}
    for name in names:
        scene = scenes[name]
        keyframes = sorted(samples[scene["token"]], key=lambda s: s["timestamp"])
        out[name] = {"log": tables.log_name(scene),
                     "keyframes": [keyframe_poses(tables, sample["token"]) for sample in keyframes]}
    return {"dataset": f"nuScenes {tables.version}: {', '.join(names)} (images NOT included)", "scenes": out}


def find_occ3d(occ3d: Path, token: str) -> Path | None:
    """``occ3d``/gts/<scene>/<token>/labels.npz, or None; ToolError when ``occ3d`` has no gts/ folder."""
    if not (occ3d / "gts").is_dir():
        raise ToolError(f"--occ3d {occ3d} has no gts/ folder: pass the Occ3D-nuScenes folder that holds "
                        f"gts/<scene>/<sample token>/labels.npz")
    return next(iter(sorted((occ3d / "gts").glob(f"*/{token}/labels.npz"))), None)


def left_out(what: str, why: str, needed_by: tuple[str, ...]) -> str:
    """One line saying a part was not built, why, and which test modules need it."""
    return f"not built: {what} ({why}); needed by {', '.join(sorted(needed_by))}"


def build(dataroot: Path, version: str, occ3d: Path | None, out: Path, force: bool = False,
          say: Callable[[str], None] = print) -> list[str]:
    """Write the sample folder at ``out`` from a nuScenes dataroot (and an Occ3D folder); returns the lines of the
    parts left out. ``say`` gets one line per step; ``out`` appears only once complete (--force replaces it)."""
    occ3d_file = find_occ3d(occ3d, OCC3D_TOKEN) if occ3d is not None else None
    refuse_existing([out], force)
    say(f"reading the nuScenes {version} tables under {dataroot}")
    tables = Tables(dataroot, version)
    poses = scene_poses(tables, MINI_VAL_SCENES)
    if poses is None and not any(tables.has_sample(keyframe.token) for keyframe in KEYFRAMES):
        raise ToolError(f"nuScenes {version} under {dataroot} holds none of the sample folder's scenes (scene-0061, "
                        f"scene-0003, {', '.join(MINI_VAL_SCENES)}); use --version v1.0-mini or v1.0-trainval")
    skipped = []
    with atomic_directory(out, force) as staging:
        staging.mkdir(parents=True)
        nuscenes = staging / "nuscenes_sample"
        for keyframe in KEYFRAMES:
            if tables.has_sample(keyframe.token):
                say(f"writing nuscenes_sample/{keyframe.folder}")
                write_keyframe(tables, keyframe, nuscenes / keyframe.folder)
            else:
                skipped.append(left_out(f"nuscenes_sample/{keyframe.folder}", f"sample {keyframe.token} is not in "
                                        f"{version}; it is in v1.0-trainval", keyframe.needed_by))
        if poses is not None:
            say(f"writing nuscenes_sample/mini_val_poses/poses.json ({', '.join(MINI_VAL_SCENES)})")
            write_json(nuscenes / "mini_val_poses" / "poses.json", poses)
        else:
            skipped.append(left_out("nuscenes_sample/mini_val_poses", f"{version} lacks scene "
                                    f"{' or '.join(MINI_VAL_SCENES)}; v1.0-mini and v1.0-trainval hold them",
                                    POSES_NEEDED_BY))
        if (dataroot / "LICENSE").is_file():
            nuscenes.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dataroot / "LICENSE", nuscenes / LICENSE_NAME)
        else:
            skipped.append(f"not built: nuscenes_sample/{LICENSE_NAME} ({dataroot / 'LICENSE'} missing; the terms "
                           f"are at https://www.nuscenes.org/terms-of-use)")
        if occ3d_file is not None:
            say(f"writing occ3d_sample/labels.npz from {occ3d_file}")
            (staging / "occ3d_sample").mkdir(parents=True)
            shutil.copyfile(occ3d_file, staging / "occ3d_sample" / "labels.npz")
        else:
            why = (f"no gts/*/{OCC3D_TOKEN}/labels.npz under {occ3d}" if occ3d is not None
                   else "pass --occ3d OCC3D_DIR")
            skipped.append(left_out("occ3d_sample/labels.npz", why, OCC3D_NEEDED_BY))
    return skipped
