"""tf for the node: the genuine ``tf2_ros.Buffer`` where it imports, else ``FallbackBuffer``; one listener for both.

The contract the node relies on, read from geometry2 0.39 (tf2 ``buffer_core.cpp``, ``cache.cpp``,
``static_cache.cpp``; tf2_ros_py ``buffer.py``) and measured (../shared/docs/genuine_ros_behaviour.md), which
``FallbackBuffer`` follows:

- ``Buffer(cache_time=None, node=None)``: dynamic history is kept ``cache_time`` (default 10 s) behind the newest
  stamp of each frame. Pruning runs before each insertion, so one sample older than the window can stay until the
  next one arrives. With ``node``, a backwards jump of the node's clock (sim time from a looping bag) clears the
  buffer; without it, nothing ever clears it but ``clear()``.
- ``set_transform``/``set_transform_static`` never raise for bad data: a transform is ignored (and logged) when a
  frame id is empty, parent and child are the same, a value is NaN, or the quaternion has no direction (all zero);
  any other quaternion is normalised. Leading slashes of frame ids are dropped. A dynamic stamp older than the
  frame's newest stamp minus ``cache_time`` is ignored (``TF_OLD_DATA``): after a bag loop longer than the cache,
  nothing new is stored until ``clear()``.
- ``clear()`` forgets dynamic history; static transforms stay.
- Look-ups interpolate (linear translation, slerp rotation), time 0 means the latest time every edge on the path
  has, and a time outside an edge's history raises ``ExtrapolationException``; unknown frames
  ``LookupException``, separate trees ``ConnectivityException``.

What the genuine buffer does that harms the node (a stale buffer after a jump, history mixed across a jump shorter
than the cache) is handled here, identically on both backends, by ``TfListener``: it is the node's only writer to
the buffer and clears it before storing a stamp from before a backwards jump. Set ``GSDOCC_COMPAT_FALLBACK=1`` to
force the fallback (A/B on a full ROS 2 install).

Why this file is long: the fallback buffer carries the whole tf2 contract above (pruning, refusal, interpolation,
the tree walk, waits) and sits beside the listener that protects both backends; split, each half would need the
other to be read.
"""

from __future__ import annotations

import bisect
import threading
import time as walltime
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import rclpy.logging
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from gsdocc_ros.pipeline.geometry import invert_transform, make_transform, quaternion_to_matrix
from gsdocc_ros.ros.backends import FALLBACK, genuine
from gsdocc_ros.ros.conversions import matrix_to_transform, stamp_to_ns

_tf2_ros = genuine("tf2_ros")
if _tf2_ros is not None:  # the fallback raises the genuine classes too, so one except clause fits both
    TransformException = _tf2_ros.TransformException
    LookupException = _tf2_ros.LookupException
    ConnectivityException = _tf2_ros.ConnectivityException
    ExtrapolationException = _tf2_ros.ExtrapolationException
else:
    class TransformException(Exception):
        """Base of the tf look-up errors (named as tf2's)."""

    class LookupException(TransformException):
        """A frame named in a look-up has never been received."""

    class ConnectivityException(TransformException):
        """Both frames exist but are not in the same tree."""

    class ExtrapolationException(TransformException):
        """The requested time lies outside the stored history of some transform on the path."""

DEFAULT_CACHE = Duration(seconds=10.0)
"""tf2's default cache time."""

_LOG = rclpy.logging.get_logger("gsdocc.tf")


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


def transform_problem(transform: TransformStamped) -> str | None:
    """Why a tf buffer would ignore ``transform`` (tf2's rules, plus infinite values), or None when it is usable."""
    parent, child = transform.header.frame_id.lstrip("/"), transform.child_frame_id.lstrip("/")
    t, q = transform.transform.translation, transform.transform.rotation
    values = np.array([t.x, t.y, t.z, q.x, q.y, q.z, q.w], dtype=np.float64)
    if not parent or not child:
        return "a frame id is empty"
    if parent == child:
        return f"parent and child are the same frame {child!r}"
    if not np.all(np.isfinite(values)):
        return f"a value is not finite: translation {values[:3].tolist()}, rotation {values[3:].tolist()}"
    if _normalised(values[3:]) is None:
        return f"the quaternion {values[3:].tolist()} has no direction (norm {np.linalg.norm(values[3:]):g})"
    return None


def _normalised(quaternion: np.ndarray) -> np.ndarray | None:
    """``quaternion`` scaled to unit norm, or None when it has none (zero, underflowing or overflowing)."""
    with np.errstate(all="ignore"):
        unit = quaternion / np.linalg.norm(quaternion)
    return unit if np.all(np.isfinite(unit)) and np.any(unit) else None


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
    """History of one child frame's transform to its parent: stamps in increasing order with their values."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quaternions: list[np.ndarray] = field(default_factory=list)


def _format_s(stamp_ns: int) -> str:
    """A stamp in seconds for error messages."""
    return f"{stamp_ns / 1e9:.6f}"


class FallbackBuffer:
    """tf2_ros.Buffer stand-in with its contract (module docstring): per-frame history, look-ups through the tree.

    Thread-safe: the listener writes from the executor, look-ups may wait from a worker thread.
    """

    def __init__(self, cache_time: Duration | None = None, node: Node | None = None) -> None:
        self.cache_ns = _span_ns(cache_time or DEFAULT_CACHE)
        self._edges: dict[str, _Edge] = {}
        self._changed = threading.Condition()
        if node is not None:  # as tf2_ros: a backwards jump of the node's clock (sim time included) clears
            threshold = JumpThreshold(min_forward=None, min_backward=Duration(seconds=-1), on_clock_change=True)
            self._jump_handle = node.get_clock().create_jump_callback(threshold, post_callback=self._on_jump)

    def _on_jump(self, jump: TimeJump) -> None:
        """Clock jumped backwards (or changed type): the history belongs to another time line."""
        _LOG.warning("Detected jump back in time. Clearing tf buffer.")
        self.clear()

    # -- writing
    def set_transform(self, transform: TransformStamped, authority: str) -> bool:
        """Store a dynamic transform; False (logged) when tf2 would ignore it (module docstring)."""
        return self._store(transform, authority, static=False)

    def set_transform_static(self, transform: TransformStamped, authority: str) -> bool:
        """Store a static transform (valid at every time); same rules as set_transform."""
        return self._store(transform, authority, static=True)

    def clear(self) -> None:
        """Forget all dynamic history; static transforms stay."""
        with self._changed:
            self._edges = {child: edge for child, edge in self._edges.items() if edge.static}

    def _store(self, transform: TransformStamped, authority: str, static: bool) -> bool:
        """Validate, prune what the cache time has passed, refuse data from the past, insert in stamp order."""
        child, parent = transform.child_frame_id.lstrip("/"), transform.header.frame_id.lstrip("/")
        problem = transform_problem(transform)
        if problem is not None:
            _LOG.error(f"ignoring transform {parent!r} -> {child!r} from {authority!r}: {problem}")
            return False
        t, q = transform.transform.translation, transform.transform.rotation
        translation = np.array([t.x, t.y, t.z], dtype=np.float64)
        quaternion = _normalised(np.array([q.x, q.y, q.z, q.w], dtype=np.float64))
        stamp = stamp_to_ns(transform.header.stamp)
        with self._changed:
            edge = self._edges.get(child)
            if edge is None or edge.static != static or edge.parent != parent:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps[:], edge.translations[:], edge.quaternions[:] = [stamp], [translation], [quaternion]
            elif not self._insert(edge, stamp, translation, quaternion):
                _LOG.warning(f"TF_OLD_DATA ignoring data from the past for frame {child} at time "
                             f"{_format_s(stamp)} according to authority {authority}", throttle_duration_sec=5.0)
                return False
            self._changed.notify_all()
        return True

    def _insert(self, edge: _Edge, stamp: int, translation: np.ndarray, quaternion: np.ndarray) -> bool:
        """Insert one dynamic sample as tf2's TimeCache does; False when it is older than the cache window."""
        if edge.stamps:
            keep = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)  # prune before inserting
            del edge.stamps[:keep], edge.translations[:keep], edge.quaternions[:keep]
            if stamp < edge.stamps[-1] - self.cache_ns:
                return False
        index = bisect.bisect_left(edge.stamps, stamp)
        if index < len(edge.stamps) and edge.stamps[index] == stamp:  # same stamp again: the newer one wins
            edge.translations[index], edge.quaternions[index] = translation, quaternion
        else:
            edge.stamps.insert(index, stamp)
            edge.translations.insert(index, translation)
            edge.quaternions.insert(index, quaternion)
        return True

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
            stamp = min(edge.stamps[-1] for edge in dynamic if edge.stamps)  # latest time every edge on the path has
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


Buffer = _tf2_ros.Buffer if _tf2_ros is not None else FallbackBuffer
"""The buffer class in use: genuine tf2_ros.Buffer where installed."""

BACKEND = "tf2_ros" if _tf2_ros is not None else FALLBACK
"""Which buffer this process uses (for logs and diagnostics)."""

TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
"""QoS of /tf subscriptions (as tf2_ros's listener)."""

TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""QoS of /tf_static: transient-local so that a late joiner still receives the latched static transforms."""

JUMP_BACK = Duration(seconds=1.0)
"""A frame's stamp this much older than its newest means time went backwards (bag loop, simulator restart)."""


class TfListener:
    """Feeds a tf buffer (genuine or fallback) from /tf and /tf_static, clearing it across backwards time jumps.

    Used on both backends instead of tf2_ros.TransformListener so that the buffer is cleared *before* a stamp from
    before a jump is stored (a genuine buffer would refuse it as old data, or mix two time lines). A frame whose
    stamp is more than ``jump_back`` older than its newest one clears the buffer, forgets every frame's newest
    stamp and calls ``on_jump(seconds_back)``. ``restart_if_older(stamp)`` does the same when another source (image
    stamps, the node clock) shows the jump first. Transforms tf2 would ignore are counted in ``rejected`` and
    logged once per 5 s; the rest of their message is used.
    """

    def __init__(self, buffer: object, node: Node, *, jump_back: Duration = JUMP_BACK,
                 on_jump: Callable[[float], None] = lambda seconds: None, qos: QoSProfile = TF_QOS,
                 static_qos: QoSProfile = TF_STATIC_QOS) -> None:
        self.buffer = buffer
        self.rejected = 0
        """Transforms refused since start."""
        self.clears = 0
        """Times the buffer was cleared because time went backwards."""
        self._jump_ns = _span_ns(jump_back)
        self._on_jump = on_jump
        self._newest: dict[str, int] = {}  # per child frame: newest dynamic stamp stored
        self._lock = threading.Lock()
        self._node = node
        group = MutuallyExclusiveCallbackGroup()  # tf never waits behind image callbacks
        self._subscriptions = [
            node.create_subscription(TFMessage, "/tf", lambda msg: self.receive(msg, False), qos,
                                     callback_group=group),
            node.create_subscription(TFMessage, "/tf_static", lambda msg: self.receive(msg, True), static_qos,
                                     callback_group=group),
        ]

    def receive(self, msg: TFMessage, static: bool) -> None:
        """Store every transform of one /tf (``static`` False) or /tf_static message."""
        store = self.buffer.set_transform_static if static else self.buffer.set_transform
        for transform in msg.transforms:
            problem = transform_problem(transform)
            if problem is not None:
                self.rejected += 1
                self._node.get_logger().warning(
                    f"tf: refused {transform.header.frame_id!r} -> {transform.child_frame_id!r}: {problem}",
                    throttle_duration_sec=5.0)
                continue
            if not static:
                self._check_jump(transform.child_frame_id.lstrip("/"), stamp_to_ns(transform.header.stamp))
            store(transform, "default_authority")

    def restart_if_older(self, stamp_ns: int) -> bool:
        """Time restarted at ``stamp_ns``: clear the buffer if it holds dynamic tf from after that (the old time
        line). Returns whether it cleared."""
        with self._lock:
            newest = max(self._newest.values(), default=None)
            if newest is None or newest <= stamp_ns + self._jump_ns:
                return False
            self._clear(newest - stamp_ns)
            return True

    def _check_jump(self, child: str, stamp: int) -> None:
        """Clear before storing when ``child``'s stamp went back by more than the jump threshold."""
        with self._lock:
            newest = self._newest.get(child)
            if newest is not None and stamp < newest - self._jump_ns:
                self._clear(newest - stamp)
            self._newest[child] = max(stamp, self._newest.get(child, stamp))

    def _clear(self, back_ns: int) -> None:
        """Clear the buffer and the newest stamps (lock held), then tell the owner."""
        self.buffer.clear()
        self._newest.clear()
        self.clears += 1
        self._node.get_logger().warning(f"tf: time went back {back_ns / 1e9:.3f} s: tf buffer cleared")
        self._on_jump(back_ns / 1e9)

    def unregister(self) -> None:
        """Stop listening (destroys the two subscriptions)."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []
