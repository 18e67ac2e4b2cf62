"""`gsdocc record`: grids published by another process land on disk unchanged, named by sample token, with the
source, frame, stamp and class names of their message."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest


from rosbags.rosbag2 import StoragePlugin  # noqa: E402

from gsdocc_ros.tools import cli  # noqa: E402
from gsdocc_ros.io.bags import DISTROS  # noqa: E402
from gsdocc_ros.io.bag_messages import Event, MessageFactory, Rank, write_bag  # noqa: E402
from gsdocc_ros.io.bag_messages import SAMPLE_TOKEN_TOPIC as TOKEN_TOPIC  # noqa: E402
from gsdocc_ros.io.grid_files import GridInfo, read_grid_file  # noqa: E402
from gsdocc_ros.pipeline.grid import CLASS_NAMES  # noqa: E402
from gsdocc_ros.io.sample_tokens import TokenMap  # noqa: E402

TOPIC = "/test/occupancy"
STAMPS = [1532402927612460000, 1532402928112404000, 1532402928612460000]
"""CAM_FRONT stamps of three published grids; the bag maps the first two to tokens."""
SOURCES = ["GSD-OCC RANDOM WEIGHTS (seed 0) – écrit", "", "GSD-OCC weights epoch_24.pth"]
"""The published grids' source fields: non-ASCII, empty (a producer that does not say), plain."""
FRAMES = ["base_link", "base_link", "ego_vehicle"]

PUBLISHER = r"""
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from gsdocc_ros.msg import SemanticVoxelGrid
from gsdocc_ros.pipeline.grid import CLASS_NAMES

topic, sent_file = sys.argv[1], sys.argv[2]
stamps, sources, frames = [int(s) for s in sys.argv[3:6]], sys.argv[6:9], sys.argv[9:12]
rng = np.random.default_rng(3)
sent, messages = {}, []
for i, stamp in enumerate(stamps + [stamps[-1] + 500_000_000]):
    labels = rng.integers(0, 18, size=(200, 200, 16), dtype=np.uint8)
    msg = SemanticVoxelGrid()
    msg.header.frame_id = frames[min(i, 2)]
    msg.source = sources[min(i, 2)]
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = -40.0, -40.0, -1.0
    msg.origin.orientation.w = 1.0
    msg.voxel_size = 0.4
    msg.size_x, msg.size_y, msg.size_z = labels.shape
    msg.labels = labels.tobytes() if i < len(stamps) else labels[:, :, :15].tobytes()  # last one: sizes disagree
    msg.class_names = list(CLASS_NAMES)
    msg.free_index = 17
    sent[f"labels{i}"] = labels
    if i == 0:
        sent["confidence0"] = rng.integers(0, 256, size=labels.shape, dtype=np.uint8)
        msg.confidence = sent["confidence0"].tobytes()
    if i == 1:
        sent["camera_mask1"] = rng.integers(0, 2, size=labels.shape, dtype=np.uint8)
        msg.camera_mask = sent["camera_mask1"].tobytes()
    messages.append(msg)
np.savez(sent_file, **sent)
rclpy.init()
node = rclpy.create_node("grid_sender")
pub = node.create_publisher(SemanticVoxelGrid, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
deadline = time.monotonic() + 60
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.05)
for msg in messages:
    pub.publish(msg)
while time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
"""


def write_token_bag(path: Path, tokens: dict[int, str], topic: str = TOKEN_TOPIC) -> Path:
    """A rosbag2 folder with std_msgs/String tokens at the given bag times, as the bag converter writes them."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    string = typestore.types["std_msgs/msg/String"]
    with Writer(path, version=9) as writer:
        connection = writer.add_connection(topic, string.__msgtype__, typestore=typestore)
        for stamp, token in tokens.items():
            writer.write(connection, stamp, typestore.serialize_cdr(string(data=token), string.__msgtype__))
    return path


def test_recorded_files_equal_what_was_sent(tmp_path: Path, subprocess_env: dict[str, str], python: str,
                                            capsys: pytest.CaptureFixture) -> None:
    bag = write_token_bag(tmp_path / "tokens", {STAMPS[0]: "tokA", STAMPS[1] + 300: "tokB"})
    sent_file, out = tmp_path / "sent.npz", tmp_path / "grids"
    sender = subprocess.Popen([python, "-c", PUBLISHER, TOPIC, str(sent_file), *map(str, STAMPS), *SOURCES, *FRAMES],
                              env=subprocess_env)
    try:
        code = cli.main(["record", "--topic", TOPIC, "--out", str(out), "--bag", str(bag), "--count", "4",
                         "--timeout", "60"])
    finally:
        sender.terminate()
        sender.wait(timeout=10)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(["tokA.npz", "tokB.npz", f"{STAMPS[2]}.npz"])
    sent = np.load(sent_file)
    for i, name in enumerate(["tokA", "tokB", str(STAMPS[2])]):
        with np.load(out / f"{name}.npz") as saved:
            assert np.array_equal(saved["semantics"], sent[f"labels{i}"]) and saved["semantics"].dtype == np.uint8
            assert int(saved["stamp_ns"]) == STAMPS[i]
            assert ("confidence" in saved.files) == (i == 0) and ("camera_mask" in saved.files) == (i == 1)
    assert np.array_equal(np.load(out / "tokA.npz")["confidence"], sent["confidence0"])
    # What each grid shows, as its message said: read back as plain unicode arrays, no pickle.
    infos = [read_grid_file(out / f"{name}.npz").info for name in ["tokA", "tokB", str(STAMPS[2])]]
    assert infos == [GridInfo(source or None, frame, stamp, CLASS_NAMES)
                     for source, frame, stamp in zip(SOURCES, FRAMES, STAMPS)]
    with np.load(out / "tokA.npz", allow_pickle=False) as saved:
        assert saved["source"].dtype.kind == "U" and str(saved["source"]) == SOURCES[0]
        assert saved["class_names"].tolist() == list(CLASS_NAMES)
    assert "source" not in np.load(out / "tokB.npz").files  # an empty source is not recorded as known
    assert np.array_equal(np.load(out / "tokB.npz")["camera_mask"], sent["camera_mask1"])
    assert "SemanticVoxelGrid.labels: 600000 entries" in captured.err  # the malformed grid, refused by name
    assert captured.out.strip().splitlines()[-1] == (
        f"wrote 3 grids to 3 files in {out} (2 named by sample token, 1 refused)")


def test_token_map_matches_the_nearest_stamp_within_tolerance(tmp_path: Path) -> None:
    tokens = TokenMap.from_bag(write_token_bag(tmp_path / "bag", {100_000_000: "a", 600_000_000: "b"}))
    assert len(tokens) == 2
    assert tokens.lookup(100_000_000) == "a" and tokens.lookup(600_999_999) == "b"
    assert tokens.lookup(101_000_001) is None and tokens.lookup(350_000_000) is None


def test_record_refuses_bad_inputs_before_subscribing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "grids"
    out.mkdir()
    (out / "old.npz").write_bytes(b"")
    assert cli.main(["record", "--out", str(out), "--count", "1"]) == 2
    assert f"{out} already holds .npz files; pass --force" in capsys.readouterr().err
    bag = write_token_bag(tmp_path / "bag", {1: "a"}, topic="/other")
    assert cli.main(["record", "--out", str(tmp_path / "new"), "--bag", str(bag)]) == 2
    assert f"bag {bag} has no {TOKEN_TOPIC} topic (topics: /other)" in capsys.readouterr().err
    assert cli.main(["record", "--out", str(tmp_path / "new"), "--count", "0"]) == 2
    assert not (tmp_path / "new").exists()


def test_record_times_out_with_a_count_short(tmp_path: Path, ros_domain: int, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["record", "--topic", "/nobody/publishes", "--out", str(tmp_path / "g"), "--count", "2",
                     "--timeout", "0.5"]) == 2
    assert "only 0 of 2 grids arrived on /nobody/publishes within 0.5 s" in capsys.readouterr().err


@pytest.mark.parametrize("distro, storage", [(name, StoragePlugin.MCAP) for name in sorted(DISTROS)]
                         + [("humble", StoragePlugin.SQLITE3)])
def test_token_map_reads_the_bag_format_of_every_distribution(tmp_path: Path, distro: str,
                                                             storage: StoragePlugin) -> None:
    """`gsdocc record --bag` reads the tokens of a converter bag written in any distribution's format."""
    factory = MessageFactory(distro=DISTROS[distro])
    events = [Event(stamp, Rank.SAMPLE_TOKEN, i, TOKEN_TOPIC, lambda token=token: factory.string(token))
              for i, (stamp, token) in enumerate(zip(STAMPS, ("tokA", "tokB", "tokC")))]
    path = tmp_path / "bag"
    write_bag(path, events, storage, {}, progress=False, distro=DISTROS[distro])
    tokens = TokenMap.from_bag(path)
    assert len(tokens) == 3
    assert [tokens.lookup(stamp) for stamp in STAMPS] == ["tokA", "tokB", "tokC"]
