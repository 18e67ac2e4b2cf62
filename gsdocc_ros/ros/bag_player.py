"""Replay a ROS 2 bag into the live ROS graph with rclpy, for installs without `ros2 bag` (`gsdocc play`, the demo).

Each message is published as its recorded CDR bytes (no deserialisation; Fast DDS may zero-pad a payload to a
multiple of 4 bytes on the wire, which decodes identically), at its bag time scaled by ``rate``
(2 = twice as fast), starting ``start_offset_s`` seconds into the bag. ``loop`` starts over at the end until Ctrl-C.
``clock`` publishes rosgraph_msgs/Clock on /clock at ``clock_rate_hz`` (bag time as sim time, for nodes with
use_sim_time); at each loop the clock jumps back to the start. ``delay_s`` waits before the first message (time for
subscribers to be discovered).

QoS: every topic is published reliable, which reaches reliable and best-effort subscribers alike (a best-effort
publisher, as the sensor-data profile has, is never matched by a reliable subscriber). Camera and point-cloud
topics keep the sensor-data depth (keep last 5) and are volatile; /tf keeps 100 as tf2 does. /tf_static and any
topic recorded with a transient-local publisher are latched (reliable, transient local, depth = their message
count): a late subscriber still gets them, and at each loop, or when the start offset skips them, they are
published again before the first message.

From Python: ``BagPlayer(node, BagSource(path), PlayOptions(...))`` with ``run()`` (blocking), ``start()`` /
``stop()`` / ``join()`` for a background thread, and ``stats`` (messages per topic, loops, clock ticks).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection, QosDurability
from rosbags.rosbag2 import ReaderError

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import TF_STATIC_TOPIC, TF_TOPIC
from gsdocc_ros.io.bags import open_bag

CLOCK_TOPIC = "/clock"
SENSOR_TYPES = frozenset({"sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo",
                          "sensor_msgs/msg/PointCloud2"})
"""Types published with the sensor-data history depth."""
MAX_LATCHED_DEPTH = 1000


@dataclass(frozen=True)
class PlayOptions:
    """How a bag is replayed."""

    rate: float = 1.0
    """Playback speed factor: wall seconds = bag seconds / rate."""
    start_offset_s: float = 0.0
    """Seconds into the bag at which playback starts."""
    loop: bool = False
    """Start over at the end, until stop()."""
    clock: bool = False
    """Publish rosgraph_msgs/Clock on /clock (bag time) while playing."""
    clock_rate_hz: float = 40.0
    """How often /clock is published."""
    delay_s: float = 0.0
    """Wall seconds to wait before the first message."""

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ToolError(f"--rate must be positive, got {self.rate}")
        if self.clock_rate_hz <= 0:
            raise ToolError(f"--clock-rate must be positive, got {self.clock_rate_hz}")
        if self.start_offset_s < 0:
            raise ToolError(f"--start-offset must not be negative, got {self.start_offset_s}")
        if self.delay_s < 0:
            raise ToolError(f"--delay must not be negative, got {self.delay_s}")


@dataclass
class PlayStats:
    """Counters of a replay, updated while it runs."""

    published: Counter = field(default_factory=Counter)
    """Messages published per topic (latched re-publications included)."""
    loops: int = 0
    """Complete passes over the bag."""
    clock_ticks: int = 0
    max_late_s: float = 0.0
    """Worst delay of a publication behind its schedule (wall seconds)."""

    @property
    def messages(self) -> int:
        """Messages published on all topics."""
        return sum(self.published.values())


def message_class(type_name: str) -> type:
    """The rclpy message class of a type name (``pkg/msg/Name``; ``pkg/Name`` accepted); ToolError when unknown."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts.insert(1, "msg")
    if len(parts) != 3 or not all(parts):
        raise ToolError(f"malformed message type name {type_name!r}")
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        get_message = None
    try:
        if get_message is not None:
            return get_message("/".join(parts))
        _check_generated(*parts)
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError, ValueError) as error:
        raise ToolError(f"unknown message type {type_name} ({error}); is its package built and on the "
                        f"Python path?") from None


def _check_generated(package: str, kind: str, name: str) -> None:
    """ImportError unless ``package.kind`` holds rosidl-generated code for ``name``, found without importing.

    Type names come from the bag (outside data): only generated interface modules may be imported for them,
    never an arbitrary installed package whose import would run its code.
    """
    if not (package.isidentifier() and kind in ("msg", "srv", "action") and name.isidentifier()):
        raise ImportError(f"not an interface type name: {package}/{kind}/{name}")
    if package in sys.modules:  # already imported: its full path (gsdocc_ros extends its own)
        locations = list(getattr(sys.modules[package], "__path__", []))
    else:  # locate the top-level package without running it
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    if not locations or not any((Path(folder) / kind / f"_{snake}.py").is_file() for folder in locations):
        raise ImportError(f"no generated interface {package}/{kind}/{name} is installed")


class BagSource:
    """A checked bag: the topics to play, their types (resolved to rclpy classes) and its messages.

    Needs no running ROS; every problem (missing, truncated, unknown type or topic) is a ToolError.
    """

    def __init__(self, path: str | Path, topics: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.reader = open_bag(self.path)
        try:
            available = {c.topic for c in self.reader.connections}
            unknown = [t for t in topics if t not in available]
            if unknown:
                raise ToolError(f"topics not in {self.path}: {', '.join(unknown)} (bag has: "
                                f"{', '.join(sorted(available))})")
            self.connections: list[Connection] = [c for c in self.reader.connections
                                                  if not topics or c.topic in topics]
            self.types: dict[str, str] = {}
            for c in self.connections:
                if self.types.setdefault(c.topic, c.msgtype) != c.msgtype:
                    raise ToolError(f"{self.path}: topic {c.topic} holds two types, {self.types[c.topic]} and "
                                    f"{c.msgtype}")
            self.classes = {topic: message_class(name) for topic, name in self.types.items()}
            self.counts: Counter = Counter()
            """Messages per topic, from the bag's metadata."""
            for c in self.connections:
                self.counts[c.topic] += c.msgcount
            if not sum(self.counts.values()):
                raise ToolError(f"{self.path}: no messages on {', '.join(topics) if topics else 'any topic'}")
        except ToolError:
            self.reader.close()
            raise
        self.latched = {c.topic for c in self.connections if c.topic == TF_STATIC_TOPIC
                        or any(q.durability == QosDurability.TRANSIENT_LOCAL
                               for q in getattr(c.ext, "offered_qos_profiles", ()))}
        """Topics replayed latched (transient local)."""
        self.start_ns: int = self.reader.start_time
        self.duration_ns: int = self.reader.duration

    def messages(self, start_ns: int | None = None, stop_ns: int | None = None,
                 topics: Sequence[str] | None = None) -> Iterator[tuple[str, int, bytes]]:
        """(topic, bag time ns, CDR bytes) in time order within [start_ns, stop_ns); ToolError on damaged data."""
        connections = [c for c in self.connections if topics is None or c.topic in topics]
        if not connections:
            return
        try:
            for connection, stamp, raw in self.reader.messages(connections, start=start_ns, stop=stop_ns):
                yield connection.topic, stamp, raw
        except (ReaderError, OSError, EOFError, ValueError, sqlite3.DatabaseError) as error:
            raise ToolError(f"bag {self.path} is damaged: {error}") from None

    def close(self) -> None:
        """Close the bag."""
        self.reader.close()


def topic_qos(topic: str, type_name: str, latched_depth: int | None = None) -> Any:
    """The publisher QoS of a topic (see the module doc): reliable always; latched when ``latched_depth`` is set."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if latched_depth is not None:
        depth, durability = latched_depth, DurabilityPolicy.TRANSIENT_LOCAL
    else:
        depth = 5 if type_name in SENSOR_TYPES else 100 if topic == TF_TOPIC else 10
        durability = DurabilityPolicy.VOLATILE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=durability)


class BagPlayer:
    """Publishes a BagSource's messages on a node with the recorded timing (scaled), optional /clock and loop."""

    def __init__(self, node: Any, source: BagSource, options: PlayOptions = PlayOptions(),
                 qos: Callable[[str, str, int | None], Any] = topic_qos) -> None:
        self.node, self.source, self.options = node, source, options
        self.start_ns = source.start_ns + round(options.start_offset_s * 1e9)
        if options.start_offset_s * 1e9 > source.duration_ns:
            raise ToolError(f"--start-offset {options.start_offset_s} s is past the end of {source.path} "
                            f"({source.duration_ns / 1e9:.3f} s long)")
        self.publishers = {
            topic: node.create_publisher(
                source.classes[topic], topic,
                qos(topic, name, min(max(source.counts[topic], 1), MAX_LATCHED_DEPTH)
                    if topic in source.latched else None))
            for topic, name in source.types.items()
        }
        self.clock_publisher = None
        if options.clock:
            from rosgraph_msgs.msg import Clock

            self.clock_publisher = node.create_publisher(Clock, CLOCK_TOPIC, topic_qos(CLOCK_TOPIC, "", None))
        self.stats = PlayStats()
        self._next_tick = 0.0
        """Wall (monotonic) time of the next /clock publication."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def subscription_counts(self) -> dict[str, int]:
        """Matched subscribers per played topic (to wait for discovery before playing)."""
        return {topic: pub.get_subscription_count() for topic, pub in self.publishers.items()}

    def stop(self) -> None:
        """Ask the replay to end; returns at once (run() returns after the current publication)."""
        self._stop.set()

    def start(self) -> threading.Thread:
        """Run the replay in a background thread; join() waits for it and re-raises its error."""
        def target() -> None:
            try:
                self.run()
            except BaseException as error:  # handed to join()
                self._error = error

        self._thread = threading.Thread(target=target, name="gsdocc-play", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the background replay; True once it has ended. Re-raises the error that ended it."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return not self._thread.is_alive()

    def run(self) -> PlayStats:
        """Play (and loop) until the end or stop(); returns the counters."""
        if self.options.delay_s and self._stop.wait(self.options.delay_s):
            return self.stats
        while not self._stop.is_set():
            if not self._play_pass():
                break
            self.stats.loops += 1
            if not self.options.loop:
                break
        return self.stats

    def _play_pass(self) -> bool:
        """One pass from the start offset to the end; False if stopped on the way."""
        for topic, _, raw in self.source.messages(self.source.start_ns, self.start_ns, sorted(self.source.latched)):
            self._publish(topic, raw)  # latched messages the offset skips
        wall0 = time.monotonic()
        self._next_tick = wall0
        for topic, stamp, raw in self.source.messages(self.start_ns):
            due = wall0 + (stamp - self.start_ns) / 1e9 / self.options.rate
            if not self._wait_until(due, wall0):
                return False
            self.stats.max_late_s = max(self.stats.max_late_s, time.monotonic() - due)
            self._publish(topic, raw)
        return not self._stop.is_set()

    def _publish(self, topic: str, raw: bytes) -> None:
        self.publishers[topic].publish(raw)
        self.stats.published[topic] += 1

    def _wait_until(self, due: float, wall0: float) -> bool:
        """Sleep until the wall time ``due``, publishing /clock ticks meanwhile; False if stopped."""
        while True:
            now = time.monotonic()
            if self.clock_publisher is not None and now >= self._next_tick:
                self._publish_clock(self.start_ns + round((now - wall0) * self.options.rate * 1e9))
                self._next_tick = max(self._next_tick + 1.0 / self.options.clock_rate_hz, now)
            wake = due if self.clock_publisher is None else min(due, self._next_tick)
            if now >= due:
                return not self._stop.is_set()
            if self._stop.wait(max(0.0, wake - now)):
                return False

    def _publish_clock(self, stamp_ns: int) -> None:
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        self.clock_publisher.publish(Clock(clock=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)))
        self.stats.clock_ticks += 1


