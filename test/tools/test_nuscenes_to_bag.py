"""gsdocc nuscenes-to-bag on a small nuScenes-format dataset built from the real scene-0061 keyframe.

The dataset (under tmp_path only) holds the real tables, images, scan and calibration of one keyframe plus
copies shifted in time and pose: scene-0061 = keyframe, one sweep 0.25 s later, keyframe 0.5 s later;
scene-0062 = one keyframe 20 s later. Every copy links to the real files, so payloads can be compared.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from PIL import Image
from rosbags.typesys import Stores, get_typestore

from gsdocc_ros.pipeline.frames import CAMERA_NAMES
from gsdocc_ros.tools import cli
from gsdocc_ros.io.bags import DISTROS, bag_typestore, open_bag
from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.nuscenes import convert

VERSION = "v1.0-mini"
SOURCE = Path("nuscenes_sample") / "scene-0061_ca9a282c"
REAL_TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "sample", "sample_data", "scene", "sensor",
               "visibility")
VELOCITY = np.array([-3.26, -8.64, 0.0])
"""Ego velocity of the real keyframe (m/s, global frame; README of nuscenes_sample), used to shift poses."""
# (offset from the real keyframe in µs, is a keyframe, sample index, scene index)
FRAMES = ((0, True, 0, 0), (250_000, False, 1, 0), (500_000, True, 1, 0), (20_000_000, True, 2, 1))
SCENES = ("scene-0061", "scene-0062")


def _token(*parts: object) -> str:
    """A deterministic 32-hex nuScenes-like token."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def _write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


@pytest.fixture
def dataset(shared_data: Path, tmp_path: Path) -> Path:
    """A v1.0-mini dataroot under tmp_path that nuscenes-devkit loads: 2 scenes, 3 keyframes, 1 sweep, 7 channels."""
    src = shared_data / SOURCE
    root = tmp_path / "nuscenes"
    tables = {name: json.loads((src / "v1.0-test" / f"{name}.json").read_text()) for name in REAL_TABLES}
    sensors = {s["token"]: s["channel"] for s in tables["sensor"]}
    calib = {c["token"]: c for c in tables["calibrated_sensor"]}
    poses = {p["token"]: p for p in tables["ego_pose"]}
    real_sample, real_scene = tables["sample"][0], tables["scene"][0]
    sample_tokens = [real_sample["token"], _token("sample", 1), _token("sample", 2)]
    scene_tokens = [real_scene["token"], _token("scene", 1)]

    sample_data, ego_poses = [], []
    chains: dict[tuple[int, str], list[dict]] = {}
    for index, (offset, key, sample_index, scene_index) in enumerate(FRAMES):
        for real in tables["sample_data"]:
            channel = sensors[calib[real["calibrated_sensor_token"]]["sensor_token"]]
            record = dict(real)
            record["token"] = real["token"] if index == 0 else _token(real["token"], index)
            record["ego_pose_token"] = record["token"]
            record["timestamp"] = real["timestamp"] + offset
            record["is_key_frame"] = key
            record["sample_token"] = sample_tokens[sample_index]
            name = Path(real["filename"]).name.replace(str(real["timestamp"]), str(record["timestamp"]))
            record["filename"] = f"{'samples' if key else 'sweeps'}/{channel}/{name}"
            link = root / record["filename"]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(src / real["filename"])
            pose = dict(poses[real["ego_pose_token"]])
            pose.update(token=record["token"], timestamp=record["timestamp"],
                        translation=(np.asarray(pose["translation"]) + VELOCITY * offset * 1e-6).tolist())
            sample_data.append(record)
            ego_poses.append(pose)
            chains.setdefault((scene_index, channel), []).append(record)
    for chain in chains.values():
        for prev, nxt in zip([None, *chain[:-1]], chain):
            nxt["prev"] = prev["token"] if prev else ""
            if prev:
                prev["next"] = nxt["token"]
        chain[-1]["next"] = ""

    # scene-0061: samples 0 -> 1; scene-0062: sample 2 alone.
    links = (("", sample_tokens[1]), (sample_tokens[0], ""), ("", ""))
    samples = [{"token": token, "timestamp": real_sample["timestamp"] + offset, "scene_token": scene_tokens[scene],
                "prev": prev, "next": nxt}
               for token, (offset, scene), (prev, nxt) in zip(sample_tokens, ((0, 0), (500_000, 0), (20_000_000, 1)),
                                                               links)]
    scenes = [dict(real_scene, token=scene_tokens[0], name=SCENES[0], nbr_samples=2,
                   first_sample_token=sample_tokens[0], last_sample_token=sample_tokens[1]),
              dict(real_scene, token=scene_tokens[1], name=SCENES[1], nbr_samples=1,
                   first_sample_token=sample_tokens[2], last_sample_token=sample_tokens[2])]
    log = real_scene["log_token"]
    (root / "maps").mkdir()
    Image.new("L", (4, 4)).save(root / "maps" / "mask.png")  # the devkit only checks that the map mask exists
    tables.update(sample_data=sample_data, ego_pose=ego_poses, sample=samples, scene=scenes, instance=[],
                  sample_annotation=[],
                  log=[{"token": log, "logfile": "n015-2018-07-24-11-22-45+0800", "vehicle": "n015",
                        "date_captured": "2018-07-24", "location": "singapore-onenorth"}],
                  map=[{"token": _token("map"), "log_tokens": [log], "category": "semantic_prior",
                        "filename": "maps/mask.png"}])
    for name, table in tables.items():
        _write(root / VERSION / f"{name}.json", table)
    return root


def _tables(root: Path) -> dict[str, dict[str, dict]]:
    """The dataset's tables by token, read straight from the JSON (independent of the devkit)."""
    return {name: {r["token"]: r for r in json.loads((root / VERSION / f"{name}.json").read_text())}
            for name in ("sample_data", "calibrated_sensor", "sensor", "ego_pose", "sample", "scene")}


def _channel(tables: dict, record: dict) -> str:
    return tables["sensor"][tables["calibrated_sensor"][record["calibrated_sensor_token"]]["sensor_token"]]["channel"]


def _read_bag(path: Path) -> list[tuple[str, int, object, str]]:
    """(topic, bag time, deserialised message, type) of every message, in the reader's (time) order."""
    store = bag_typestore()
    with closing(open_bag(path)) as reader:
        return [(c.topic, t, store.deserialize_cdr(raw, c.msgtype), c.msgtype) for c, t, raw in reader.messages()]


def _stamp(msg: object) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def test_keyframes_bag_content(dataset: Path, tmp_path: Path) -> None:
    """Default conversion of one scene: topics, types, counts, JPEG bytes, stamps, tf order, static tf, tokens."""
    out = tmp_path / "bag"
    result = convert(dataset, VERSION, out, scenes=[SCENES[0]], progress=False)
    messages = _read_bag(out)
    tables = _tables(dataset)

    types = {topic: msgtype for topic, _, _, msgtype in messages}
    expected_types = {"/tf_static": "tf2_msgs/msg/TFMessage", "/tf": "tf2_msgs/msg/TFMessage",
                      "/gsdocc/scene": "std_msgs/msg/String", "/gsdocc/sample_token": "std_msgs/msg/String",
                      **{f"/{c}/image_rect_compressed": "sensor_msgs/msg/CompressedImage" for c in CAMERA_NAMES},
                      **{f"/{c}/camera_info": "sensor_msgs/msg/CameraInfo" for c in CAMERA_NAMES}}
    assert types == expected_types
    counts = {topic: sum(1 for m in messages if m[0] == topic) for topic in types}
    assert counts == {**{t: 2 for t in types if t.startswith("/CAM_")}, "/tf": 12, "/tf_static": 1,
                      "/gsdocc/scene": 1, "/gsdocc/sample_token": 2}
    assert dict(result.counts) == counts and result.keyframes == 2 and result.scenes == [SCENES[0]]
    times = [t for _, t, _, _ in messages]
    assert times == sorted(times)
    assert times[0] == min(r["timestamp"] for r in tables["sample_data"].values()) * 1000

    keyframes = {(_channel(tables, r), r["timestamp"] * 1000): r for r in tables["sample_data"].values()
                 if r["is_key_frame"] and tables["sample"][r["sample_token"]]["scene_token"]
                 == next(s["token"] for s in tables["scene"].values() if s["name"] == SCENES[0])}
    poses_seen: dict[int, object] = {}
    images = 0
    for topic, time, msg, _ in messages:
        if topic == "/tf":
            (tf,) = msg.transforms
            assert (tf.header.frame_id, tf.child_frame_id) == ("map", "base_link") and time == _stamp(tf)
            poses_seen[_stamp(tf)] = tf.transform
        elif topic.endswith("/image_rect_compressed"):
            channel = topic.split("/")[1]
            record = keyframes[(channel, time)]
            assert _stamp(msg) == time and msg.header.frame_id == channel and msg.format == "jpeg"
            assert msg.data.tobytes() == (dataset / record["filename"]).read_bytes()
            pose = tables["ego_pose"][record["ego_pose_token"]]
            transform = poses_seen[time]  # written before the image, at the same bag time
            t, q = transform.translation, transform.rotation
            assert [t.x, t.y, t.z] == pose["translation"]
            assert [q.w, q.x, q.y, q.z] == pose["rotation"]
            images += 1
        elif topic.endswith("/camera_info"):
            channel = topic.split("/")[1]
            k = np.asarray(tables["calibrated_sensor"][keyframes[(channel, time)]["calibrated_sensor_token"]]
                           ["camera_intrinsic"])
            assert _stamp(msg) == time and msg.header.frame_id == channel and (msg.width, msg.height) == (1600, 900)
            np.testing.assert_array_equal(msg.k.reshape(3, 3), k)
            np.testing.assert_array_equal(msg.p.reshape(3, 4), np.concatenate([k, np.zeros((3, 1))], axis=1))
            np.testing.assert_array_equal(msg.r.reshape(3, 3), np.eye(3))
            assert msg.distortion_model == "plumb_bob" and not msg.d.any()
    assert images == 12

    (static,) = [msg for topic, _, msg, _ in messages if topic == "/tf_static"]
    calib = {_channel(tables, r): tables["calibrated_sensor"][r["calibrated_sensor_token"]]
             for r in tables["sample_data"].values()}
    assert {tf.child_frame_id for tf in static.transforms} == set(calib) == {*CAMERA_NAMES, "LIDAR_TOP"}
    for tf in static.transforms:
        t, q = tf.transform.translation, tf.transform.rotation
        assert tf.header.frame_id == "base_link"
        assert [t.x, t.y, t.z] == calib[tf.child_frame_id]["translation"]
        assert [q.w, q.x, q.y, q.z] == calib[tf.child_frame_id]["rotation"]

    tokens = [(time, msg.data) for topic, time, msg, _ in messages if topic == "/gsdocc/sample_token"]
    front = {time: record["sample_token"] for (channel, time), record in keyframes.items() if channel == "CAM_FRONT"}
    assert tokens == sorted(front.items())
    assert [token for _, token in tokens] == [s["token"] for s in sorted(tables["sample"].values(),
                                                                          key=lambda s: s["timestamp"])][:2]
    order = [(topic, time) for topic, time, _, _ in messages]
    for time, _ in tokens:  # the token is written just before its CAM_FRONT image
        assert order.index(("/gsdocc/sample_token", time)) < order.index(("/CAM_FRONT/image_rect_compressed", time))


def test_all_sweeps_lidar_sqlite(dataset: Path, tmp_path: Path) -> None:
    """--all-sweeps --lidar over both scenes in sqlite3: sweeps, point clouds, one static tf, scene markers."""
    out = tmp_path / "bag"
    convert(dataset, VERSION, out, all_sweeps=True, lidar=True, storage="sqlite3", progress=False)
    assert (out / "bag_0.db3").is_file() and (out / "metadata.yaml").is_file()
    messages = _read_bag(out)
    tables = _tables(dataset)
    by_topic: dict[str, list] = {}
    for topic, time, msg, _ in messages:
        by_topic.setdefault(topic, []).append((time, msg))
    assert all(len(by_topic[f"/{c}/image_rect_compressed"]) == 4 for c in CAMERA_NAMES)
    assert len(by_topic["/tf"]) == 4 * 7 and len(by_topic["/tf_static"]) == 1
    assert [m.data for _, m in by_topic["/gsdocc/scene"]] == list(SCENES)
    assert len(by_topic["/gsdocc/sample_token"]) == 3

    lidar = {r["timestamp"] * 1000: r for r in tables["sample_data"].values() if _channel(tables, r) == "LIDAR_TOP"}
    assert [t for t, _ in by_topic["/LIDAR_TOP"]] == sorted(lidar)
    time, cloud = by_topic["/LIDAR_TOP"][1]
    raw = (dataset / lidar[time]["filename"]).read_bytes()
    assert not lidar[time]["is_key_frame"] and cloud.header.frame_id == "LIDAR_TOP"
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"]
    assert cloud.point_step == 20 and cloud.width == len(raw) // 20 == 34688
    assert cloud.data.tobytes() == raw
    tf_times = [t for t, _ in by_topic["/tf"]]
    assert set(lidar) <= set(tf_times)


def test_type_hashes_match_installed_kilted_messages(dataset: Path, tmp_path: Path) -> None:
    """A Kilted bag's type hashes equal those of the Kilted message packages installed beside rclpy."""
    out = tmp_path / "bag"
    convert(dataset, VERSION, out, scenes=[SCENES[1]], lidar=True, progress=False, ros_distro="kilted")
    share = Path(sys.prefix) / "share"
    with closing(open_bag(out)) as reader:
        connections = list(reader.connections)
    checked = 0
    for connection in connections:
        package, _, name = connection.msgtype.split("/")
        description = share / package / "msg" / f"{name}.json"
        if not description.is_file():
            continue
        hashes = {h["type_name"]: h["hash_string"] for h in json.loads(description.read_text())["type_hashes"]}
        assert connection.digest == hashes[connection.msgtype], connection.msgtype
        checked += 1
    if not checked:
        pytest.skip(f"no installed ROS 2 type descriptions under {share}")
    assert checked == len(connections)


@dataclass(frozen=True)
class Rosbag2Format:
    """What one distribution's rosbag2 writes into metadata.yaml, as read in its source (see FORMATS)."""

    version: int
    bag_fields: frozenset[str]
    topic_fields: frozenset[str]
    qos_as_string: bool
    """offered_qos_profiles: a YAML string holding the list with rmw enum numbers, or a YAML list with names."""
    store: Stores
    """rosbags type store of that distribution's message definitions."""

    def qos(self, latched: bool) -> dict:
        """The converter's offered profile (reliable keep-last; /tf_static transient local, depth 1) as encoded."""
        names = {"history": "keep_last", "reliability": "reliable",
                 "durability": "transient_local" if latched else "volatile", "liveliness": "automatic"}
        numbers = {"keep_last": 1, "reliable": 1, "transient_local": 1, "volatile": 2, "automatic": 1}  # rmw/types.h
        zero = {"sec": 0, "nsec": 0}
        return {**{key: numbers[value] if self.qos_as_string else value for key, value in names.items()},
                "depth": 1 if latched else 10, "deadline": zero, "lifespan": zero, "liveliness_lease_duration": zero,
                "avoid_ros_namespace_conventions": False}


V5_FIELDS = frozenset({"version", "storage_identifier", "duration", "starting_time", "message_count",
                       "topics_with_message_count", "compression_format", "compression_mode", "relative_file_paths",
                       "files"})
V5_TOPIC_FIELDS = frozenset({"name", "type", "serialization_format", "offered_qos_profiles"})
FORMATS = {
    # humble branch (0.15.12): rosbag2_storage/include/rosbag2_storage/bag_metadata.hpp (version 5),
    # rosbag2_storage/src/rosbag2_storage/metadata_io.cpp (fields encoded, offered_qos_profiles a std::string),
    # rosbag2_transport/src/rosbag2_transport/qos.cpp (policies encoded as their int values).
    "humble": Rosbag2Format(5, V5_FIELDS, V5_TOPIC_FIELDS, True, Stores.ROS2_HUMBLE),
    # iron branch (0.22.7): bag_metadata.hpp (version 7, custom_data); topic_metadata.hpp and
    # rosbag2_storage/include/rosbag2_storage/yaml.hpp (type_description_hash; QoS still a string, same qos.cpp).
    "iron": Rosbag2Format(7, V5_FIELDS | {"custom_data"}, V5_TOPIC_FIELDS | {"type_description_hash"}, True,
                          Stores.ROS2_IRON),
    # jazzy branch (0.26.5): bag_metadata.hpp (version 9, ros_distro); yaml.hpp (offered_qos_profiles a sequence
    # from version 9); rosbag2_storage/src/rosbag2_storage/qos.cpp (policy names from version 9).
    "jazzy": Rosbag2Format(9, V5_FIELDS | {"custom_data", "ros_distro"}, V5_TOPIC_FIELDS | {"type_description_hash"},
                           False, Stores.ROS2_JAZZY),
    # kilted (0.32): no kilted branch in the snapshot read; rolling at 0.29.0 writes jazzy's version 9 with the same
    # fields, and the rosbag2_storage changelog up to 0.32.0 records no metadata change.
    "kilted": Rosbag2Format(9, V5_FIELDS | {"custom_data", "ros_distro"}, V5_TOPIC_FIELDS | {"type_description_hash"},
                            False, Stores.ROS2_KILTED),
}
"""Per distribution, what its rosbag2 writes. On every branch rosbag2_cpp/src/rosbag2_cpp/writers/
sequential_writer.cpp (format_storage_uri) names the first storage file <bag folder>_0, plus .mcap / .db3."""


@pytest.mark.parametrize("distro", sorted(FORMATS))
def test_bag_format_of_each_distribution(dataset: Path, tmp_path: Path, distro: str) -> None:
    """--ros-distro writes that distribution's metadata.yaml field by field, file name and message definitions."""
    expected = FORMATS[distro]
    out = tmp_path / "bag"
    convert(dataset, VERSION, out, scenes=[SCENES[1]], progress=False, ros_distro=distro)
    assert sorted(p.name for p in out.iterdir()) == ["bag_0.mcap", "metadata.yaml"]

    document = yaml.safe_load((out / "metadata.yaml").read_text())
    assert list(document) == ["rosbag2_bagfile_information"]
    info = document["rosbag2_bagfile_information"]
    assert set(info) == expected.bag_fields
    assert info["version"] == expected.version and info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == ["bag_0.mcap"] and [f["path"] for f in info["files"]] == ["bag_0.mcap"]
    assert info["message_count"] == 21 == sum(t["message_count"] for t in info["topics_with_message_count"])
    assert info["compression_format"] == "" and info["compression_mode"] == ""
    if "custom_data" in expected.bag_fields:
        assert info["custom_data"] == {"gsdocc.source": f"nuScenes {VERSION}", "gsdocc.scenes": SCENES[1],
                                       "gsdocc.sweeps": "keyframes"}
    if "ros_distro" in expected.bag_fields:
        assert info["ros_distro"] == distro
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in info["topics_with_message_count"]}
    assert len(topics) == 16
    for name, topic in topics.items():
        assert set(topic) == expected.topic_fields, name
        assert topic["serialization_format"] == "cdr"
        if "type_description_hash" in expected.topic_fields:
            assert re.fullmatch(r"RIHS01_[0-9a-f]{64}", topic["type_description_hash"]), name
        qos = topic["offered_qos_profiles"]
        assert isinstance(qos, str) == expected.qos_as_string, name
        assert (yaml.safe_load(qos) if expected.qos_as_string else qos) == [expected.qos(name == "/tf_static")]

    store = get_typestore(expected.store)
    with (out / "bag_0.mcap").open("rb") as stream:
        summary = make_reader(stream).get_summary()
    channels = {c.topic: c for c in summary.channels.values()}
    assert set(channels) == set(topics)
    for name, channel in channels.items():  # what rosbag2's mcap plugin reads when there is no metadata.yaml
        schema = summary.schemas[channel.schema_id]
        assert schema.name == topics[name]["type"] and schema.encoding == "ros2msg"
        assert schema.data.decode() == store.generate_msgdef(schema.name, ros_version=2)[0]
        profiles = yaml.safe_load(channel.metadata["offered_qos_profiles"])
        assert profiles == [expected.qos(name == "/tf_static")]


def test_each_distribution_embeds_its_own_message_definitions() -> None:
    """The type store of each --ros-distro is that distribution's (its own set of types; Humble's older Marker)."""
    own = {name for name in bag_typestore().types if name.startswith("gsdocc_ros/")}
    assert own, "this package's messages are not registered"
    for name, expected in FORMATS.items():
        assert set(bag_typestore(DISTROS[name]).types) - own == set(get_typestore(expected.store).types), name
    marker = "visualization_msgs/msg/Marker"
    humble, kilted = (bag_typestore(DISTROS[name]).generate_msgdef(marker, ros_version=2)[0]
                      for name in ("humble", "kilted"))
    assert humble == get_typestore(Stores.ROS2_HUMBLE).generate_msgdef(marker, ros_version=2)[0] != kilted


def test_humble_bag_reads_without_type_hashes(dataset: Path, tmp_path: Path) -> None:
    """The default bag (Humble's format) carries no type hash; the tools' reader still opens and decodes it."""
    out = tmp_path / "bag"
    convert(dataset, VERSION, out, scenes=[SCENES[1]], storage="sqlite3", progress=False)
    info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 5 and info["relative_file_paths"] == ["bag_0.db3"]
    assert sorted(p.name for p in out.iterdir()) == ["bag_0.db3", "metadata.yaml"]
    with closing(open_bag(out)) as reader:
        assert {c.digest for c in reader.connections} == {""}
    assert [m.data for topic, _, m, _ in _read_bag(out) if topic == "/gsdocc/scene"] == [SCENES[1]]


@pytest.mark.parametrize("case, message", [
    ("dataroot", "is not a directory"),
    ("version", "check --version"),
    ("scene", "scenes not in v1.0-mini: scene-9999"),
    ("missing file", "1 dataset file(s) missing"),
    ("bad scan", "is not a whole number of 20-byte points"),
])
def test_errors_leave_no_output(dataset: Path, tmp_path: Path, case: str, message: str) -> None:
    """Wrong inputs raise ToolError naming the problem, and nothing (not even a staging folder) is left."""
    dataroot, version, scenes = dataset, VERSION, None
    if case == "dataroot":
        dataroot = tmp_path / "no_such_root"
    elif case == "version":
        version = "v1.0-trainval"
    elif case == "scene":
        scenes = ["scene-0061", "scene-9999"]
    elif case == "missing file":
        next((dataset / "sweeps" / "CAM_BACK").iterdir()).unlink()
    else:  # a scan whose size is not a multiple of a point: found only while writing
        scan = next((dataset / "samples" / "LIDAR_TOP").iterdir())
        scan.unlink()
        scan.write_bytes(b"\0" * 30)
    out_dir = tmp_path / "out"
    with pytest.raises(ToolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert(dataroot, version, out_dir / "bag", scenes=scenes, all_sweeps=True, lidar=True, progress=False)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_refuses_to_overwrite_unless_forced(dataset: Path, tmp_path: Path) -> None:
    """An existing output is kept (ToolError) without --force and replaced by a complete bag with it."""
    out = tmp_path / "bag"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ToolError, match="exists; pass --force"):
        convert(dataset, VERSION, out, scenes=[SCENES[1]], progress=False)
    assert (out / "keep.txt").read_text() == "old"
    convert(dataset, VERSION, out, scenes=[SCENES[1]], force=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["bag_0.mcap", "metadata.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert len(_read_bag(out)) == 1 + 1 + 6 + 6 + 6 + 1  # tf_static, scene, tf, images, infos, token


def test_cli(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gsdocc nuscenes-to-bag` reports where it wrote; a user error is one line and exit code 2."""
    out = tmp_path / "cli_bag"
    args = ["nuscenes-to-bag", "--dataroot", str(dataset), "--version", VERSION, "--out", str(out),
            "--scenes", SCENES[1]]
    assert cli.main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("wrote 21 messages") and last.endswith(f"to {out}")
    assert cli.main(args) == 2
    assert capsys.readouterr().err.strip() == f"gsdocc nuscenes-to-bag: error: {out} exists; pass --force to overwrite it"
