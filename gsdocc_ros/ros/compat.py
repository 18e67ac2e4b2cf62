"""The single seam to the ROS 2 pieces pip cannot install: tf buffer/listener, approximate-time sync, image decoding.

Where the genuine ROS 2 library imports (``tf2_ros``, ``message_filters``), ``Buffer``, ``TransformListener``,
``Subscriber`` and ``ApproximateTimeSynchronizer`` are the genuine classes; otherwise they are this module's own
implementations with the same call shape (``Fallback*``). Set ``GSDOCC_COMPAT_FALLBACK=1`` to force the fallbacks
(A/B on a full ROS install). ``BACKENDS`` says which one is in use.

cv_bridge is deliberately not used: for the 8-bit encodings the node accepts, a numpy view of ``msg.data`` is
what cv_bridge does too, and an importable ``cv_bridge`` may be the ROS 1 PyPI package that mis-decodes
(ros2_environment.md). Image decoding is therefore always this module's, with one tested path.

Time is handled as integer nanoseconds inside; the public methods take ``rclpy.time.Time`` or a
``builtin_interfaces/Time`` message, and ``Duration`` for time spans, as tf2_ros does.
"""

from __future__ import annotations

import bisect
import importlib
import io
import os
import threading
import time as walltime
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image as PILImage
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from tf2_msgs.msg import TFMessage

from gsdocc_ros.pipeline.geometry import invert_transform, make_transform, quaternion_to_matrix
from gsdocc_ros.ros.conversions import matrix_to_transform, stamp_to_ns

FALLBACK_ENV = "GSDOCC_COMPAT_FALLBACK"
"""Environment variable: "1" forces this module's own implementations even where the genuine ones import."""


def _genuine(module: str) -> ModuleType | None:
    """The genuine ROS 2 module ``module``, or None when it is absent or the fallback is forced."""
    if os.environ.get(FALLBACK_ENV) == "1":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _to_ns(value: Time | TimeMsg) -> int:
    """Nanoseconds of an rclpy Time or a builtin_interfaces/Time message (0 means "latest", as in tf2)."""
    if isinstance(value, Time):
        return value.nanoseconds
    if isinstance(value, TimeMsg):
        return stamp_to_ns(value)
    raise TypeError(f"time: expected rclpy.time.Time or builtin_interfaces/Time, got {type(value).__name__}")


def _span_ns(value: Duration | None) -> int:
    """Nanoseconds of an rclpy Duration (None is zero)."""
    return 0 if value is None else value.nanoseconds


# --------------------------------------------------------------------------------------------------- tf buffer

_tf2_ros = _genuine("tf2_ros")
if _tf2_ros is not None:  # the fallback buffer raises the genuine classes too, so one except clause fits both
    TransformException = _tf2_ros.TransformException
    LookupException = _tf2_ros.LookupException
    ConnectivityException = _tf2_ros.ConnectivityException
    ExtrapolationException = _tf2_ros.ExtrapolationException
    InvalidArgumentException = _tf2_ros.InvalidArgumentException
else:
    class TransformException(Exception):
        """Base of the tf look-up errors (named as tf2's)."""

    class LookupException(TransformException):
        """A frame named in a look-up has never been received."""

    class ConnectivityException(TransformException):
        """Both frames exist but are not in the same tree."""

    class ExtrapolationException(TransformException):
        """The requested time lies outside the stored history of some transform on the path."""

    class InvalidArgumentException(TransformException):
        """A transform handed to the buffer is unusable (NaN, non-unit quaternion, empty or equal frame ids)."""


def _unit_quaternion(transform: TransformStamped) -> tuple[np.ndarray, np.ndarray]:
    """(translation (3,), unit quaternion xyzw (4,)) of a transform; InvalidArgumentException if unusable."""
    t, q = transform.transform.translation, transform.transform.rotation
    where = f"transform {transform.header.frame_id!r} -> {transform.child_frame_id!r}"
    if not transform.header.frame_id or not transform.child_frame_id:
        raise InvalidArgumentException(f"{where}: frame ids must be non-empty")
    if transform.header.frame_id == transform.child_frame_id:
        raise InvalidArgumentException(f"{where}: parent and child frame are the same")
    translation = np.array([t.x, t.y, t.z], dtype=np.float64)
    quaternion = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not np.all(np.isfinite(translation)):
        raise InvalidArgumentException(f"{where}: translation is not finite: {translation.tolist()}")
    try:
        quaternion_to_matrix(quaternion)  # refuses NaN and norms far from 1
    except ValueError as error:
        raise InvalidArgumentException(f"{where}: {error}") from None
    return translation, quaternion / np.linalg.norm(quaternion)


def _slerp(q0: np.ndarray, q1: np.ndarray, ratio: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions (xyzw) along the shorter arc."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # q and -q are the same rotation: take the short way
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: normalised lerp is exact to double precision here
        q = q0 + ratio * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1.0 - ratio) * theta) * q0 + np.sin(ratio * theta) * q1) / np.sin(theta)


@dataclass
class _Edge:
    """History of one child frame's transform to its parent: sorted stamps, translations and quaternions."""

    parent: str
    static: bool
    stamps: list[int]
    translations: list[np.ndarray]
    quaternions: list[np.ndarray]


def _format_s(stamp_ns: int) -> str:
    """A stamp in seconds for error messages."""
    return f"{stamp_ns / 1e9:.6f}"


class FallbackBuffer:
    """tf2_ros.Buffer stand-in: time-stamped transforms per child frame, look-ups through the tree with interpolation.

    Dynamic transforms are kept for ``cache_time`` (default 10 s) behind the newest stamp of their own frame;
    static ones forever. A dynamic stamp more than ``jump_back`` older than the newest one of its frame means
    time went backwards (bag loop, simulator restart): all dynamic history is cleared first and ``resets`` is
    incremented. ``clear()`` does the same on demand; static transforms survive both (they are not re-sent).
    Thread-safe: the listener writes from the executor, look-ups may wait from a worker thread.
    """

    def __init__(self, cache_time: Duration | None = None, *, jump_back: Duration | None = None) -> None:
        self.cache_ns = _span_ns(cache_time) or 10 * 10**9
        self.jump_back_ns = _span_ns(jump_back) or 10**9
        self.resets = 0
        """How many times dynamic history was cleared because time went backwards (or clear() was called)."""
        self._edges: dict[str, _Edge] = {}
        self._changed = threading.Condition()

    # -- writing
    def set_transform(self, transform: TransformStamped, authority: str) -> None:
        """Store a dynamic transform; InvalidArgumentException for NaN, unusable quaternions or frame ids."""
        self._store(transform, static=False)

    def set_transform_static(self, transform: TransformStamped, authority: str) -> None:
        """Store a static transform (valid at every time); same validation as set_transform."""
        self._store(transform, static=True)

    def clear(self) -> None:
        """Forget all dynamic history (static transforms stay) and count a reset."""
        with self._changed:
            self._clear_dynamic()

    def _clear_dynamic(self) -> None:
        """clear() with the lock held."""
        self._edges = {child: edge for child, edge in self._edges.items() if edge.static}
        self.resets += 1

    def _store(self, transform: TransformStamped, static: bool) -> None:
        """Validate, then insert in stamp order and prune what is older than the cache."""
        translation, quaternion = _unit_quaternion(transform)
        child, parent = transform.child_frame_id, transform.header.frame_id
        stamp = stamp_to_ns(transform.header.stamp)
        with self._changed:
            edge = self._edges.get(child)
            if not static and edge is not None and not edge.static and stamp < edge.stamps[-1] - self.jump_back_ns:
                self._clear_dynamic()  # time went backwards
                edge = None
            if static or edge is None or edge.static != static or edge.parent != parent:
                edge = self._edges[child] = _Edge(parent, static, [], [], [])  # new frame, re-parented or re-typed
            if static:
                edge.stamps[:], edge.translations[:], edge.quaternions[:] = [stamp], [translation], [quaternion]
            else:
                index = bisect.bisect_left(edge.stamps, stamp)
                if index < len(edge.stamps) and edge.stamps[index] == stamp:  # same stamp again: replace
                    edge.translations[index], edge.quaternions[index] = translation, quaternion
                else:
                    edge.stamps.insert(index, stamp)
                    edge.translations.insert(index, translation)
                    edge.quaternions.insert(index, quaternion)
                keep = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
                del edge.stamps[:keep], edge.translations[:keep], edge.quaternions[:keep]
            self._changed.notify_all()

    # -- reading
    def lookup_transform(self, target_frame: str, source_frame: str, time: Time | TimeMsg,
                         timeout: Duration | None = None) -> TransformStamped:
        """Transform mapping ``source_frame`` points into ``target_frame`` at ``time`` (0: latest common time).

        Waits up to ``timeout`` (wall clock) for the data to arrive; raises Lookup/Connectivity/Extrapolation-
        Exception otherwise.
        """
        stamp = _to_ns(time)
        matrix, used = self._wait(lambda: self._matrix(target_frame, source_frame, stamp), timeout)
        return matrix_to_transform(matrix, target_frame, source_frame, used)

    def lookup_transform_full(self, target_frame: str, target_time: Time | TimeMsg, source_frame: str,
                              source_time: Time | TimeMsg, fixed_frame: str,
                              timeout: Duration | None = None) -> TransformStamped:
        """Transform from ``source_frame`` at ``source_time`` to ``target_frame`` at ``target_time``, through
        ``fixed_frame`` (assumed not to move between the two times), e.g. ego motion through map."""
        def compute() -> tuple[np.ndarray, int]:
            fixed_from_source, _ = self._matrix(fixed_frame, source_frame, _to_ns(source_time))
            target_from_fixed, used = self._matrix(target_frame, fixed_frame, _to_ns(target_time))
            return target_from_fixed @ fixed_from_source, used

        matrix, used = self._wait(compute, timeout)
        return matrix_to_transform(matrix, target_frame, source_frame, used)

    def can_transform(self, target_frame: str, source_frame: str, time: Time | TimeMsg,
                      timeout: Duration | None = None) -> bool:
        """Whether lookup_transform would succeed (waiting up to ``timeout``)."""
        try:
            self.lookup_transform(target_frame, source_frame, time, timeout)
        except TransformException:
            return False
        return True

    def _wait(self, compute: Callable[[], tuple[np.ndarray, int]],
              timeout: Duration | None) -> tuple[np.ndarray, int]:
        """Run ``compute`` under the lock, retrying on each new transform until it succeeds or ``timeout``."""
        deadline = walltime.monotonic() + _span_ns(timeout) / 1e9
        with self._changed:
            while True:
                try:
                    return compute()
                except TransformException:
                    remaining = deadline - walltime.monotonic()
                    if remaining <= 0:
                        raise
                    self._changed.wait(remaining)

    def _path(self, frame: str, argument: str) -> list[str]:
        """``frame`` and its ancestors up to the root; LookupException when the frame is unknown."""
        parents = {edge.parent for edge in self._edges.values()}
        if frame not in self._edges and frame not in parents:
            raise LookupException(f'"{frame}" passed to lookup_transform argument {argument} does not exist')
        path = [frame]
        while path[-1] in self._edges:
            path.append(self._edges[path[-1]].parent)
            if len(path) > len(self._edges) + 1:
                raise ConnectivityException(f"the tf tree has a loop through frame {frame!r}: {path}")
        return path

    def _matrix(self, target: str, source: str, stamp: int) -> tuple[np.ndarray, int]:
        """(target <- source (4, 4), the stamp used) at ``stamp`` ns; 0 picks the latest common time."""
        source_path = self._path(source, "source_frame")
        target_path = self._path(target, "target_frame")
        common = next((frame for frame in source_path if frame in target_path), None)
        if common is None:
            raise ConnectivityException(f"could not find a connection between {target!r} and {source!r} because "
                                        "they are not part of the same tree")
        up_source = source_path[:source_path.index(common)]  # children whose edges lead source -> common
        up_target = target_path[:target_path.index(common)]
        dynamic = [self._edges[c] for c in up_source + up_target if not self._edges[c].static]
        if stamp == 0 and dynamic:
            stamp = min(edge.stamps[-1] for edge in dynamic)  # latest time every edge on the path has
        common_from_source = self._chain(up_source, stamp, target, source)
        common_from_target = self._chain(up_target, stamp, target, source)
        return invert_transform(common_from_target) @ common_from_source, stamp

    def _chain(self, children: list[str], stamp: int, target: str, source: str) -> np.ndarray:
        """Product of the edge transforms along ``children`` (leaf first): top <- leaf."""
        matrix = np.eye(4)
        for child in children:
            translation, quaternion = self._edge_at(child, stamp, target, source)
            matrix = make_transform(quaternion_to_matrix(quaternion), translation) @ matrix
        return matrix

    def _edge_at(self, child: str, stamp: int, target: str, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(translation, quaternion) of ``child``'s edge at ``stamp``: static, exact or interpolated."""
        edge = self._edges[child]
        if edge.static:
            return edge.translations[0], edge.quaternions[0]
        stamps = edge.stamps
        if stamp > stamps[-1] or stamp < stamps[0]:
            when, data = ("future", f"latest data is at time {_format_s(stamps[-1])}") if stamp > stamps[-1] else \
                ("past", f"earliest data is at time {_format_s(stamps[0])}")
            raise ExtrapolationException(
                f"Lookup would require extrapolation into the {when}. Requested time {_format_s(stamp)} but the "
                f"{data} (edge {edge.parent!r} -> {child!r}), when looking up transform from frame [{source}] to "
                f"frame [{target}]")
        index = bisect.bisect_left(stamps, stamp)
        if stamps[index] == stamp:
            return edge.translations[index], edge.quaternions[index]
        t0, t1 = stamps[index - 1], stamps[index]
        ratio = (stamp - t0) / (t1 - t0)
        translation = (1.0 - ratio) * edge.translations[index - 1] + ratio * edge.translations[index]
        return translation, _slerp(edge.quaternions[index - 1], edge.quaternions[index], ratio)


TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
"""QoS of /tf subscriptions (as tf2_ros's listener)."""

TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""QoS of /tf_static: transient-local so that a late joiner still receives the latched static transforms."""


class FallbackTransformListener:
    """tf2_ros.TransformListener stand-in: feeds a buffer from /tf and /tf_static on ``node``'s executor.

    Transforms the buffer refuses (NaN, non-unit quaternion, ...) are counted in ``rejected`` and logged
    (throttled); the rest of their message is still used. ``spin_thread`` is not supported: spin ``node``.
    """

    def __init__(self, buffer: FallbackBuffer, node: Node, *, qos: QoSProfile = TF_QOS,
                 static_qos: QoSProfile = TF_STATIC_QOS) -> None:
        self.buffer = buffer
        self.rejected = 0
        """Transforms refused by the buffer since start."""
        self._node = node
        group = MutuallyExclusiveCallbackGroup()  # tf never waits behind image callbacks
        self._subscriptions = [
            node.create_subscription(TFMessage, "/tf", lambda msg: self._receive(msg, False), qos,
                                     callback_group=group),
            node.create_subscription(TFMessage, "/tf_static", lambda msg: self._receive(msg, True), static_qos,
                                     callback_group=group),
        ]

    def _receive(self, msg: TFMessage, static: bool) -> None:
        """Insert every transform of one /tf or /tf_static message."""
        store = self.buffer.set_transform_static if static else self.buffer.set_transform
        for transform in msg.transforms:
            try:
                store(transform, "default_authority")
            except InvalidArgumentException as error:
                self.rejected += 1
                self._node.get_logger().warning(f"tf: refused {error}", throttle_duration_sec=5.0)

    def unregister(self) -> None:
        """Stop listening (destroys the two subscriptions)."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []


if _tf2_ros is not None:
    Buffer = _tf2_ros.Buffer
    TransformListener = _tf2_ros.TransformListener
else:
    Buffer = FallbackBuffer
    TransformListener = FallbackTransformListener


# --------------------------------------------------------------------------------------- approximate-time sync

def _header_ns(msg: Any) -> int:
    """Stamp of a message's header in nanoseconds."""
    return stamp_to_ns(msg.header.stamp)


class FallbackSimpleFilter:
    """message_filters.SimpleFilter stand-in: a message source that calls registered callbacks."""

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable[..., None], tuple[Any, ...]]] = {}

    def registerCallback(self, cb: Callable[..., None], *args: Any) -> int:  # noqa: N802 - message_filters name
        """Call ``cb(*msgs, *args)`` for every message (or set); returns a connection id."""
        connection = len(self.callbacks)
        self.callbacks[connection] = (cb, args)
        return connection

    def signalMessage(self, *msg: Any) -> None:  # noqa: N802 - message_filters name
        """Hand ``msg`` to every registered callback, in registration order."""
        for cb, args in list(self.callbacks.values()):
            cb(*(msg + args))


class FallbackSubscriber(FallbackSimpleFilter):
    """message_filters.Subscriber stand-in: a subscription whose messages feed the filter chain."""

    def __init__(self, node: Node, msg_type: type, topic: str, qos_profile: QoSProfile | int = 10,
                 **kwargs: Any) -> None:
        super().__init__()
        self.topic = topic
        self.sub = node.create_subscription(msg_type, topic, self.signalMessage, qos_profile, **kwargs)


class FallbackApproximateTimeSynchronizer(FallbackSimpleFilter):
    """message_filters.ApproximateTimeSynchronizer stand-in: emits the newest set of N stamps within ``slop`` s.

    Policy (no counters, no reset: CameraSetSync adds those): each input keeps at most ``queue_size``
    messages (oldest dropped). After every arrival, the newest complete set is searched: for each candidate
    newest stamp e (newest first), every queue must hold a message in [e - slop, e]; the newest such
    message of each queue forms the set. Once emitted, every queued message at or before the set's newest
    stamp is discarded, so sets come out in increasing time.
    """

    def __init__(self, fs: Sequence[Any], queue_size: int, slop: float) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {queue_size}")
        if not slop >= 0:
            raise ValueError(f"slop: must be >= 0 seconds, got {slop}")
        self.queue_size = queue_size
        self.slop_ns = round(slop * 1e9)
        self._queues: list[list[tuple[int, int, Any]]] = [[] for _ in fs]  # per input: sorted (stamp, seq, msg)
        self._seq = 0
        self._lock = threading.RLock()
        for index, f in enumerate(fs):
            f.registerCallback(self.add, index)

    def add(self, msg: Any, index: int) -> None:
        """Queue ``msg`` of input ``index`` and emit a set if one is complete."""
        with self._lock:
            queue = self._queues[index]
            self._seq += 1
            bisect.insort(queue, (_header_ns(msg), self._seq, msg), key=lambda item: item[:2])
            if len(queue) > self.queue_size:
                del queue[0]
            found = self._newest_set()
            if found is None:
                return
            newest = max(stamp for stamp, _, _ in found)
            for queue in self._queues:
                del queue[:bisect.bisect_right(queue, newest, key=lambda item: item[0])]
        self.signalMessage(*(msg for _, _, msg in found))

    def _newest_set(self) -> list[tuple[int, int, Any]] | None:
        """The newest complete set (one entry per input) whose stamps span at most slop, or None."""
        if not all(self._queues):
            return None
        candidates = sorted({stamp for queue in self._queues for stamp, _, _ in queue}, reverse=True)
        for end in candidates:
            chosen = []
            for queue in self._queues:
                last = bisect.bisect_right(queue, end, key=lambda item: item[0]) - 1
                if last < 0 or queue[last][0] < end - self.slop_ns:
                    break
                chosen.append(queue[last])
            else:
                return chosen
        return None


_message_filters = _genuine("message_filters")
if _message_filters is not None:
    SimpleFilter = _message_filters.SimpleFilter
    Subscriber = _message_filters.Subscriber
    ApproximateTimeSynchronizer = _message_filters.ApproximateTimeSynchronizer
else:
    SimpleFilter = FallbackSimpleFilter
    Subscriber = FallbackSubscriber
    ApproximateTimeSynchronizer = FallbackApproximateTimeSynchronizer


@dataclass(frozen=True)
class SyncCounters:
    """What CameraSetSync has seen since start; ``CameraSetSync.counters()`` returns these fields as a dict."""

    messages_in: int = 0
    """Messages received on all inputs."""
    sets_out: int = 0
    """Complete sets handed to the callback."""
    messages_dropped: int = 0
    """Messages that left without being in a set: stale (not newer than the last set), queue overflow,
    superseded by a newer set, or discarded by a reset."""
    incomplete_sets: int = 0
    """Camera periods that yielded no set (a camera missing, or stamps spread wider than slop), counted as the
    most messages any one input has lost to overflow, supersession or reset: in such a period every camera
    that delivered loses exactly one image. A lower bound when different cameras fail in different periods."""
    resets: int = 0
    """Times a stamp went backwards by more than ``jump_back_s`` and all queues were emptied."""


class CameraSetSync:
    """Approximate-time synchroniser over N inputs with drop counters and a time-jump reset, on either library.

    The genuine message_filters synchroniser has no drop callback (ros2/ros2#1313), so counting happens here
    by observation, identically for both libraries: every input passes through this object first; it keeps
    a mirror of each input's queue (stamps only, same ``queue_size``, oldest overflowing first) and, when a
    set comes out, everything mirrored at or before the set's newest stamp that is not in the set counts as
    dropped. Messages not newer than the last set are dropped here before the synchroniser sees them, so
    sets are strictly increasing in time with either library. With the fallback the mirror is exact; with
    the genuine library it is exact whenever its queues behave the same way (they drop the oldest too).

    A stamp more than ``jump_back_s`` older than the newest seen (bag loop, simulator restart) empties the
    queues by building a new synchroniser, since message_filters has no reset; ``reset()`` does it on demand.
    """

    def __init__(self, inputs: Sequence[Any], queue_size: int, slop: float, jump_back_s: float = 1.0) -> None:
        if len(inputs) < 1:
            raise ValueError("inputs: at least one input filter is needed")
        self.queue_size = queue_size
        self.slop = slop
        self._jump_ns = round(jump_back_s * 1e9)
        self._callbacks: list[Callable[..., None]] = []
        self._lock = threading.RLock()
        self._counters = SyncCounters()
        self._pending: list[list[int]] = [[] for _ in inputs]
        self._lost = [0] * len(inputs)  # per input: messages lost to overflow, supersession or reset
        self._newest: int | None = None
        self._last_set: int | None = None
        self._build()
        for index, source in enumerate(inputs):
            source.registerCallback(self._receive, index)

    def registerCallback(self, cb: Callable[..., None]) -> None:  # noqa: N802 - message_filters name
        """Call ``cb(*msgs)`` with the N messages of every complete set, in input order."""
        self._callbacks.append(cb)

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters by SyncCounters field name (messages_in, sets_out, ...)."""
        with self._lock:
            return asdict(self._counters)

    def reset(self) -> None:
        """Empty every queue (queued messages count as dropped) and forget the last set; counts a reset."""
        with self._lock:
            self._drop([len(queue) for queue in self._pending])
            self._pending = [[] for _ in self._pending]
            self._newest = self._last_set = None
            self._counters = replace(self._counters, resets=self._counters.resets + 1)
            self._build()

    def _build(self) -> None:
        """A fresh synchroniser fed by one relay per input."""
        self._relays = [SimpleFilter() for _ in self._pending]
        sync = ApproximateTimeSynchronizer(self._relays, self.queue_size, self.slop)
        sync.registerCallback(self._emit)

    def _count(self, **deltas: int) -> None:
        """Add ``deltas`` to the counters."""
        self._counters = replace(self._counters, **{k: getattr(self._counters, k) + v for k, v in deltas.items()})

    def _drop(self, lost: list[int]) -> None:
        """Count ``lost[i]`` messages lost by input i, and the incomplete sets that makes."""
        self._lost = [total + n for total, n in zip(self._lost, lost)]
        self._count(messages_dropped=sum(lost), incomplete_sets=max(self._lost) - self._counters.incomplete_sets)

    def _receive(self, msg: Any, index: int) -> None:
        """One input message: jump check, staleness check, queue mirror, then on to the synchroniser."""
        stamp = _header_ns(msg)
        with self._lock:
            self._count(messages_in=1)
            if self._newest is not None and stamp < self._newest - self._jump_ns:
                self.reset()
            self._newest = stamp if self._newest is None else max(self._newest, stamp)
            if self._last_set is not None and stamp <= self._last_set:
                self._count(messages_dropped=1)  # stale: its period is over (no new incomplete set)
                return
            queue = self._pending[index]
            bisect.insort(queue, stamp)
            if len(queue) > self.queue_size:
                queue.pop(0)
                self._drop([int(i == index) for i in range(len(self._pending))])  # overflow: oldest lost
            self._relays[index].signalMessage(msg)

    def _emit(self, *msgs: Any) -> None:
        """A set from the synchroniser: count it, drop what it superseded, call the callbacks."""
        stamps = [_header_ns(msg) for msg in msgs]
        newest = max(stamps)
        with self._lock:
            for queue, stamp in zip(self._pending, stamps):
                if stamp in queue:  # always with the fallback; a genuine queue may differ from the mirror
                    queue.remove(stamp)
            kept = [[s for s in queue if s > newest] for queue in self._pending]
            self._drop([len(queue) - len(rest) for queue, rest in zip(self._pending, kept)])  # superseded
            self._pending = kept
            self._count(sets_out=1)
            self._last_set = newest
            callbacks = list(self._callbacks)
        for cb in callbacks:
            cb(*msgs)


# ------------------------------------------------------------------------------------------------ image decode

class ImageDecodeError(ValueError):
    """An image message that cannot be turned into RGB pixels; the message says why."""


try:
    import simplejpeg
except ImportError:  # Pillow alone still decodes everything, just slower
    simplejpeg = None

JPEG_DECODERS: tuple[str, ...] = ("simplejpeg", "pillow")
"""Selectable JPEG decoders. simplejpeg (libjpeg-turbo, accurate DCT and upsampling) matched Pillow exactly,
pixel for pixel, on the 12 real nuScenes JPEGs of ../shared/data (test_compat_image.py checks it), and is
about twice as fast; Pillow is what the official pre-processing used."""

DEFAULT_JPEG_DECODER = "simplejpeg" if simplejpeg is not None else "pillow"

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_to_rgb(msg: Image) -> np.ndarray:
    """uint8 (H, W, 3) RGB copy of a sensor_msgs/Image in rgb8, bgr8 or mono8, honouring row ``step`` padding."""
    where = f"Image (frame_id '{msg.header.frame_id}')"
    encoding = msg.encoding.lower()
    if encoding not in _CHANNELS:
        raise ImageDecodeError(f"{where}: unsupported encoding {msg.encoding!r}; supported: {', '.join(_CHANNELS)}")
    channels = _CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{where}: empty image {width}x{height}")
    if step < width * channels:
        raise ImageDecodeError(f"{where}: step {step} is shorter than width*channels = {width * channels}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageDecodeError(f"{where}: data holds {data.size} bytes but step*height = {step}*{height} = "
                               f"{step * height}")
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)  # drop padding
    if encoding == "bgr8":
        pixels = pixels[:, :, ::-1]
    elif encoding == "mono8":
        pixels = np.broadcast_to(pixels, (height, width, 3))
    return np.ascontiguousarray(pixels)


def _compression(msg: CompressedImage, data: bytes, where: str) -> str:
    """'jpeg' or 'png' from the data's magic bytes, checked against the format string when it names one."""
    if data.startswith(_JPEG_MAGIC):
        found = "jpeg"
    elif data.startswith(_PNG_MAGIC):
        found = "png"
    else:
        raise ImageDecodeError(f"{where}: data is neither JPEG nor PNG (first bytes {data[:8].hex()}, format "
                               f"{msg.format!r})")
    words = msg.format.lower().replace(";", " ").split()
    named = {"jpeg" if w in ("jpeg", "jpg") else w for w in words} & {"jpeg", "png"}
    if named and found not in named:
        raise ImageDecodeError(f"{where}: format {msg.format!r} says {'/'.join(sorted(named))} but the data is "
                               f"{found}")
    return found


def compressed_to_rgb(msg: CompressedImage, jpeg_decoder: str = DEFAULT_JPEG_DECODER) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a JPEG or PNG sensor_msgs/CompressedImage (format "jpeg", "bgr8; jpeg compressed
    bgr8", ...); grey images are replicated to three channels. ``jpeg_decoder`` is one of JPEG_DECODERS."""
    if jpeg_decoder not in JPEG_DECODERS:
        raise ValueError(f"jpeg_decoder: must be one of {JPEG_DECODERS}, got {jpeg_decoder!r}")
    where = f"CompressedImage (frame_id '{msg.header.frame_id}')"
    data = bytes(msg.data)
    kind = _compression(msg, data, where)
    if kind == "jpeg" and jpeg_decoder == "simplejpeg":
        if simplejpeg is None:
            raise ValueError("jpeg_decoder: simplejpeg is not installed; use 'pillow'")
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            _check_pixels(width, height, where, kind)
            return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False)
        except ImageDecodeError:
            raise
        except ValueError as error:
            raise ImageDecodeError(f"{where}: corrupt JPEG ({len(data)} bytes): {error}") from None
    try:
        with PILImage.open(io.BytesIO(data)) as image:  # reads the header only
            _check_pixels(*image.size, where, kind)
            if image.mode not in ("1", "L", "P", "RGB", "RGBA", "LA"):
                raise ImageDecodeError(f"{where}: unsupported {kind} pixel mode {image.mode!r} (8-bit only)")
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, PILImage.DecompressionBombError) as error:  # corrupt or truncated data
        raise ImageDecodeError(f"{where}: corrupt {kind.upper()} ({len(data)} bytes): {error}") from None


MAX_IMAGE_PIXELS = 64_000_000
"""Largest image decoded (64 MP): a compressed image claiming more is refused before any pixel is allocated."""


def _check_pixels(width: int, height: int, where: str, kind: str) -> None:
    """ImageDecodeError when a compressed image's header claims more than MAX_IMAGE_PIXELS."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"{where}: {kind.upper()} header claims {width}x{height} pixels, more than the "
                               f"{MAX_IMAGE_PIXELS:,} accepted; refused before decoding")


def decode_image(msg: Image | CompressedImage, jpeg_decoder: str = DEFAULT_JPEG_DECODER) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of an Image or CompressedImage message; ImageDecodeError says what is wrong."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, jpeg_decoder)
    if isinstance(msg, Image):
        return image_to_rgb(msg)
    raise TypeError(f"msg: expected sensor_msgs Image or CompressedImage, got {type(msg).__name__}")


def decode_threads(cameras: int) -> int:
    """Threads decoding one set's images side by side (both decoders release the GIL): one per camera, at most one
    per CPU. Six 1600x900 JPEGs: 59 ms one after the other, 24 ms on two threads of the 2-core test machine."""
    return max(1, min(cameras, os.cpu_count() or 1))


def decode_executor(cameras: int) -> ThreadPoolExecutor:
    """The pool of ``decode_threads(cameras)`` threads the node and the bench decode with."""
    return ThreadPoolExecutor(max_workers=decode_threads(cameras), thread_name_prefix="gsdocc-decode")


BACKENDS: dict[str, str] = {
    "tf": "tf2_ros" if _tf2_ros is not None else "gsdocc fallback",
    "sync": "message_filters" if _message_filters is not None else "gsdocc fallback",
    "jpeg": DEFAULT_JPEG_DECODER,
}
"""Which implementation each piece uses in this process (for logs and diagnostics)."""
