"""gsdocc play: a small bag written with rosbags is replayed with rclpy and received by real subscribers.

Run on shared memory in a private network namespace (see the Makefile); each test has its own ROS domain.
Timing is asserted only loosely: order, lower bounds on durations, and loop/clock jumps.
"""

from __future__ import annotations

import json
import pickle
import re
import signal
import subprocess
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from gsdocc_ros.tools import cli
from gsdocc_ros.io.bags import DISTROS, bag_typestore, open_bag
from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import Event, MessageFactory, Rank, write_bag
from gsdocc_ros.ros.bag_player import BagPlayer, BagSource, PlayOptions

import rclpy  # noqa: E402 (a missing rclpy is a broken install: fail, never skip)

T0 = 1_532_402_927_600_000_000
"""Bag start (ns), scene-0061's time."""
STEP = 100_000_000
"""Spacing of the image and tf messages (ns)."""
COUNT = 5
IMAGE = "/CAM_FRONT/image_rect_compressed"
GRID = "/gsdocc/occupancy"
JPEG = Path("nuscenes_sample/scene-0061_ca9a282c/samples/CAM_FRONT/"
            "n015-2018-07-24-11-22-45+0800__CAM_FRONT__1532402927612460.jpg")

# A subscriber process: subscribes raw to each spec (key, topic, type, reliability, durability), prints "ready",
# then "matched" once every subscription sees a publisher (discovery both ways), stops when every key has its
# expected count (or at the timeout) and pickles {key: [(monotonic time, bytes), ...]} to OUT.
SUBSCRIBER = r"""
import importlib, json, pickle, sys, time
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
specs, expected, out, timeout = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4])
rclpy.init()
node = rclpy.create_node("gsdocc_test_subscriber")
got, subscriptions = {key: [] for key, *_ in specs}, []
for key, topic, type_name, reliability, durability in specs:
    pkg, name = type_name.split("/")
    cls = getattr(importlib.import_module(pkg + ".msg"), name)
    qos = QoSProfile(depth=100, reliability=getattr(ReliabilityPolicy, reliability),
                     durability=getattr(DurabilityPolicy, durability))
    subscriptions.append(node.create_subscription(
        cls, topic, lambda raw, key=key: got[key].append((time.monotonic(), raw)), qos, raw=True))
print("ready", flush=True)
end = time.monotonic() + timeout
while time.monotonic() < end and not all(s.get_publisher_count() for s in subscriptions):
    rclpy.spin_once(node, timeout_sec=0.05)
print("matched" if all(s.get_publisher_count() for s in subscriptions) else "unmatched", flush=True)
while time.monotonic() < end and any(len(got[k]) < n for k, n in expected.items()):
    rclpy.spin_once(node, timeout_sec=0.05)
end = time.monotonic() + 0.3  # let stray extra messages in, to catch duplicates
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
with open(out, "wb") as stream:
    pickle.dump(got, stream)
node.destroy_node()
rclpy.shutdown()
"""


def _grid(store: object, stamp_ns: int, fill: int) -> object:
    """A small SemanticVoxelGrid (4 x 4 x 2) with every label ``fill``."""
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                                             nanosec=stamp_ns % 10**9),
                                      frame_id="base_link")
    pose = t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=-0.8, y=-0.8, z=-1.0),
                                       orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    return t["gsdocc_ros/msg/SemanticVoxelGrid"](
        header=header, origin=pose, voxel_size=0.4, size_x=4, size_y=4, size_z=2,
        labels=np.full(32, fill, dtype=np.uint8), class_names=["others", "free"], free_index=1,
        confidence=np.zeros(0, dtype=np.uint8), camera_mask=np.zeros(0, dtype=np.uint8), source="test")


def _transform(store: object, stamp_ns: int, parent: str, child: str, x: float) -> object:
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                                             nanosec=stamp_ns % 10**9),
                                      frame_id=parent)
    return t["geometry_msgs/msg/TransformStamped"](
        header=header, child_frame_id=child,
        transform=t["geometry_msgs/msg/Transform"](translation=t["geometry_msgs/msg/Vector3"](x=x, y=0.0, z=0.0),
                                                   rotation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                                              w=1.0)))


@pytest.fixture
def bag(shared_data: Path, tmp_path: Path) -> Path:
    """A 0.41 s mcap bag: 1 /tf_static, 5 /tf, 5 JPEG CompressedImage, 2 SemanticVoxelGrid messages."""
    store = bag_typestore()
    assert "gsdocc_ros/msg/SemanticVoxelGrid" in store.types, "own message type not registered"
    jpeg = np.frombuffer((shared_data / JPEG).read_bytes(), dtype=np.uint8)
    path = tmp_path / "bag"
    messages = [("/tf_static", T0, store.types["tf2_msgs/msg/TFMessage"](
        transforms=[_transform(store, T0, "base_link", "CAM_FRONT", 1.7)]))]
    for i in range(COUNT):
        stamp = T0 + i * STEP
        messages.append(("/tf", stamp, store.types["tf2_msgs/msg/TFMessage"](
            transforms=[_transform(store, stamp, "map", "base_link", float(i))])))
        header = store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9 + 10_000_000),
            frame_id="CAM_FRONT")
        messages.append((IMAGE, stamp + 10_000_000, store.types["sensor_msgs/msg/CompressedImage"](
            header=header, format="jpeg", data=jpeg)))
    messages += [(GRID, T0 + 150_000_000, _grid(store, T0 + 150_000_000, 0)),
                 (GRID, T0 + 350_000_000, _grid(store, T0 + 350_000_000, 1))]
    types = {"/tf_static": "tf2_msgs/msg/TFMessage", "/tf": "tf2_msgs/msg/TFMessage",
             IMAGE: "sensor_msgs/msg/CompressedImage", GRID: "gsdocc_ros/msg/SemanticVoxelGrid"}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {topic: writer.add_connection(topic, name, typestore=store) for topic, name in types.items()}
        for topic, stamp, msg in sorted(messages, key=lambda m: m[1]):
            writer.write(connections[topic], stamp, store.serialize_cdr(msg, types[topic]))
    return path


def _wire(raw: bytes) -> bytes:
    """A CDR payload as DDS may deliver it: zero-padded to a multiple of 4 bytes (Fast DDS pads some payloads)."""
    return bytes(raw) + bytes(-len(raw) % 4)


def _bag_messages(path: Path) -> dict[str, list[bytes]]:
    """Recorded CDR bytes per topic, in bag order, as they travel on the wire (see _wire)."""
    out: dict[str, list[bytes]] = {}
    with closing(open_bag(path)) as reader:
        for connection, _, raw in reader.messages():
            out.setdefault(connection.topic, []).append(_wire(raw))
    return out


def _subscriber(python: str, env: dict, tmp_path: Path, name: str, specs: list, expected: dict,
                timeout: float = 30.0) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.pkl"
    process = subprocess.Popen([python, "-c", SUBSCRIBER, json.dumps(specs), json.dumps(expected), str(out),
                                str(timeout)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    return process, out


def _collect(process: subprocess.Popen, out: Path) -> dict[str, list[tuple[float, bytes]]]:
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    return pickle.loads(out.read_bytes())


def _wait_matched(player: BagPlayer, subscriber: subprocess.Popen, topics: list[str]) -> None:
    """Wait until the player's publishers of ``topics`` and the subscriber process have discovered each other."""
    assert subscriber.stdout.readline().strip() == "matched", player.subscription_counts()
    end = time.monotonic() + 20
    while not all(player.subscription_counts()[t] for t in topics) and time.monotonic() < end:
        time.sleep(0.05)


def _clock_ns(raw: bytes) -> int:
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock

    clock = deserialize_message(raw, Clock).clock
    return clock.sec * 10**9 + clock.nanosec


def test_replay_delivers_recorded_bytes_in_order(bag: Path, node: object, tmp_path: Path, python: str,
                                                 subprocess_env: dict) -> None:
    """Every message reaches reliable and best-effort subscribers byte for byte, in order; /clock follows bag
    time; a subscriber that joins after the replay still receives the latched /tf_static."""
    recorded = _bag_messages(bag)
    specs = [["image_best_effort", IMAGE, "sensor_msgs/CompressedImage", "BEST_EFFORT", "VOLATILE"],
             ["image_reliable", IMAGE, "sensor_msgs/CompressedImage", "RELIABLE", "VOLATILE"],
             ["tf", "/tf", "tf2_msgs/TFMessage", "RELIABLE", "VOLATILE"],
             ["grid", GRID, "gsdocc_ros/SemanticVoxelGrid", "RELIABLE", "VOLATILE"],
             ["clock", "/clock", "rosgraph_msgs/Clock", "BEST_EFFORT", "VOLATILE"]]
    expected = {"image_reliable": COUNT, "tf": COUNT, "grid": 2}
    process, out = _subscriber(python, subprocess_env, tmp_path, "live", specs, expected)
    player = BagPlayer(node, BagSource(bag), PlayOptions(clock=True, clock_rate_hz=50.0))
    _wait_matched(player, process, [IMAGE, "/tf", GRID])
    stats = player.run()
    got = _collect(process, out)

    assert stats.loops == 1 and stats.published == {topic: len(raws) for topic, raws in recorded.items()}
    for key, topic in (("image_reliable", IMAGE), ("tf", "/tf"), ("grid", GRID)):
        assert [_wire(raw) for _, raw in got[key]] == recorded[topic], key
    best_effort = [recorded[IMAGE].index(_wire(raw)) for _, raw in got["image_best_effort"]]  # ValueError if altered
    assert best_effort and best_effort == sorted(set(best_effort))  # may drop, never reorder or repeat
    arrivals = [t for t, _ in got["image_reliable"]]
    assert arrivals == sorted(arrivals)

    clock = [_clock_ns(raw) for _, raw in got["clock"]]
    assert stats.clock_ticks >= 5 and len(clock) >= 3
    assert clock == sorted(clock) and T0 <= clock[0] and clock[-1] <= T0 + COUNT * STEP

    late, late_out = _subscriber(python, subprocess_env, tmp_path, "late",
                                 [["static", "/tf_static", "tf2_msgs/TFMessage", "RELIABLE", "TRANSIENT_LOCAL"]],
                                 {"static": 1}, timeout=20.0)
    assert [_wire(raw) for _, raw in _collect(late, late_out)["static"]] == recorded["/tf_static"]


def test_rate_offset_and_topic_selection(bag: Path, node: object) -> None:
    """A slower rate takes proportionally longer; an offset skips earlier messages but still sends /tf_static."""
    slow = BagPlayer(node, BagSource(bag, topics=[IMAGE]), PlayOptions(rate=0.5))
    begin = time.monotonic()
    stats = slow.run()
    assert time.monotonic() - begin >= (COUNT - 1) * STEP / 1e9 / 0.5
    assert stats.published == {IMAGE: COUNT}

    fast = BagPlayer(node, BagSource(bag), PlayOptions(rate=4.0, start_offset_s=0.25))
    stats = fast.run()
    # images at 0.01, 0.11, 0.21, 0.31, 0.41 s; tf at 0, 0.1, ..., 0.4 s; grids at 0.15, 0.35 s
    assert stats.published == {"/tf_static": 1, IMAGE: 2, "/tf": 2, GRID: 1}


def test_loop_repeats_until_stopped(bag: Path, node: object, tmp_path: Path, python: str,
                                    subprocess_env: dict) -> None:
    """--loop replays the bag again and again (with /tf_static and a /clock jump back each time) until stop()."""
    specs = [["image", IMAGE, "sensor_msgs/CompressedImage", "RELIABLE", "VOLATILE"],
             ["static", "/tf_static", "tf2_msgs/TFMessage", "RELIABLE", "VOLATILE"],
             ["clock", "/clock", "rosgraph_msgs/Clock", "RELIABLE", "VOLATILE"]]
    process, out = _subscriber(python, subprocess_env, tmp_path, "loop", specs,
                               {"image": 2 * COUNT, "static": 2})
    player = BagPlayer(node, BagSource(bag), PlayOptions(rate=2.0, loop=True, clock=True))
    _wait_matched(player, process, [IMAGE, "/tf_static"])
    player.start()
    end = time.monotonic() + 30
    while player.stats.loops < 2 and time.monotonic() < end:
        time.sleep(0.05)
    player.stop()
    assert player.join(timeout=10)
    stats = player.stats
    assert stats.loops >= 2 and stats.published[IMAGE] >= 2 * COUNT and stats.published["/tf_static"] >= 2
    got = _collect(process, out)
    recorded = _bag_messages(bag)
    # Positions in the bag of the images a real subscriber received: they wrap around at each loop.
    positions = [recorded[IMAGE].index(_wire(raw)) for _, raw in got["image"]]
    assert len(positions) > COUNT and any(b < a for a, b in zip(positions, positions[1:]))
    assert len(got["static"]) >= 2
    clock = [_clock_ns(raw) for _, raw in got["clock"]]
    assert any(b < a for a, b in zip(clock, clock[1:])), "the clock never jumped back at a loop"


def test_cli_replays_in_a_subprocess(bag: Path, node: object, python: str, subprocess_env: dict) -> None:
    """`gsdocc play BAG --topics T --loop` reaches a subscriber in this process; Ctrl-C ends it cleanly with a
    summary line."""
    from sensor_msgs.msg import CompressedImage

    recorded = _bag_messages(bag)[IMAGE]
    received: list[bytes] = []
    node.create_subscription(CompressedImage, IMAGE, lambda raw: received.append(_wire(raw)),
                             rclpy.qos.qos_profile_sensor_data, raw=True)
    process = subprocess.Popen([python, "-m", "gsdocc_ros.tools.cli", "play", str(bag), "--topics", IMAGE, "--loop",
                                "--rate", "2"], env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    end = time.monotonic() + 30
    while set(received) != set(recorded) and process.poll() is None and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert re.fullmatch(rf"played \d+ messages on 1 topics \(\d+ complete passes, 0 /clock ticks\) from {bag}",
                        stdout.strip().splitlines()[-1])
    assert set(received) == set(recorded) and len(recorded) == COUNT


def test_bad_bags_are_tool_errors(bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing, truncated, unknown-type and unknown-topic bags fail before playing, with a one-line reason."""
    with pytest.raises(ToolError, match="does not exist"):
        BagSource(tmp_path / "nothing")
    assert cli.main(["play", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip() == f"gsdocc play: error: bag {tmp_path / 'nothing'} does not exist"

    with pytest.raises(ToolError, match="topics not in .*: /nope"):
        BagSource(bag, topics=["/nope"])

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "metadata.yaml").write_bytes((bag / "metadata.yaml").read_bytes())
    data = (bag / "bag.mcap").read_bytes()
    (truncated / "bag.mcap").write_bytes(data[: len(data) // 2])
    with pytest.raises(ToolError, match="unreadable or truncated"):
        BagSource(truncated)

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("int32 value", "no_such_msgs/msg/Thing"))
    odd = tmp_path / "odd"
    with Writer(odd, version=9) as writer:
        connection = writer.add_connection("/thing", "no_such_msgs/msg/Thing", typestore=store)
        writer.write(connection, T0, store.serialize_cdr(store.types["no_such_msgs/msg/Thing"](value=3),
                                                         "no_such_msgs/msg/Thing"))
    with pytest.raises(ToolError, match="unknown message type no_such_msgs/msg/Thing"):
        BagSource(odd)

    empty = tmp_path / "empty"
    with Writer(empty, version=9) as writer:
        writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=store)
    with pytest.raises(ToolError, match="no messages on any topic"):
        BagSource(empty)


def test_options_are_checked(bag: Path, node: object) -> None:
    """Nonsense rates and offsets are ToolErrors naming the option."""
    with pytest.raises(ToolError, match="--rate must be positive"):
        PlayOptions(rate=0.0)
    with pytest.raises(ToolError, match="--start-offset 5.0 s is past the end"):
        BagPlayer(node, BagSource(bag), PlayOptions(start_offset_s=5.0))


def test_type_names_from_a_bag_import_only_generated_interfaces() -> None:
    """A bag names its types; resolving them must never import an arbitrary installed package."""
    import sys

    from gsdocc_ros.ros.bag_player import message_class

    assert message_class("sensor_msgs/msg/CompressedImage").__name__ == "CompressedImage"
    assert message_class("gsdocc_ros/msg/SemanticVoxelGrid").__name__ == "SemanticVoxelGrid"
    sys.modules.pop("this", None)
    for hostile in ("this/msg/Zen", "os/msg/path", "gsdocc_ros/msg/../../x"):
        with pytest.raises(ToolError):
            message_class(hostile)
    assert "this" not in sys.modules  # `import this` would have printed the Zen of Python


@pytest.mark.parametrize("distro", sorted(DISTROS))
def test_reads_the_bag_format_of_every_distribution(tmp_path: Path, distro: str) -> None:
    """A converter bag in each distribution's format opens with its types, counts, bytes and recorded QoS (a YAML
    string on Humble and Iron, a YAML list later), from which play takes the latched topics."""
    factory = MessageFactory(distro=DISTROS[distro])
    messages = {"/tf_static": factory.tf_message([factory.transform(T0, "base_link", "CAM_FRONT", (1.7, 0, 0),
                                                                    (1, 0, 0, 0))]),
                IMAGE: factory.compressed_image(T0 + STEP, "CAM_FRONT", b"\xff\xd8\xff\xd9", "jpeg")}
    events = [Event(T0, Rank.TF_STATIC, 0, "/tf_static", lambda: messages["/tf_static"]),
              Event(T0 + STEP, Rank.DATA, 1, IMAGE, lambda: messages[IMAGE])]
    path = tmp_path / "bag"
    write_bag(path, events, StoragePlugin.MCAP, {}, progress=False, distro=DISTROS[distro])
    source = BagSource(path)
    try:
        assert source.types == {"/tf_static": "tf2_msgs/msg/TFMessage", IMAGE: "sensor_msgs/msg/CompressedImage"}
        assert dict(source.counts) == {"/tf_static": 1, IMAGE: 1}
        qos = {c.topic: [(q.reliability, q.durability, q.depth) for q in c.ext.offered_qos_profiles]
               for c in source.connections}
        assert qos == {"/tf_static": [(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, 1)],
                       IMAGE: [(QosReliability.RELIABLE, QosDurability.VOLATILE, 10)]}
        assert source.latched == {"/tf_static"}
        store = bag_typestore(DISTROS[distro])
        assert [(topic, stamp, bytes(raw)) for topic, stamp, raw in source.messages()] == [
            (topic, stamp, bytes(store.serialize_cdr(messages[topic], source.types[topic])))
            for topic, stamp in (("/tf_static", T0), (IMAGE, T0 + STEP))]
    finally:
        source.close()
