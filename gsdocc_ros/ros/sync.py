"""Camera-set synchronisation: genuine ``message_filters`` where it imports, else its fallback; ``CameraSetSync``.

The contract of ``message_filters.ApproximateTimeSynchronizer`` (read from ros2/message_filters
``src/message_filters/__init__.py``, the same on Humble and later; measured in
../shared/docs/genuine_ros_behaviour.md), which ``FallbackApproximateTimeSynchronizer`` follows:

- Each input keeps at most ``queue_size`` messages keyed by stamp (a second message with the same stamp replaces
  the first); on overflow the oldest stamp goes.
- Sets are searched only when a message arrives, and always contain it. For every other input, the queued stamps
  within ``slop`` of it (inclusive) are candidates, nearest first; if one input has none, nothing happens.
  Combinations are tried in that order (first input varying slowest) and the first whose stamps span *strictly*
  less than ``slop`` is emitted (six stamps spread exactly 60 ms at slop 0.06: no set).
- Only the emitted messages leave the queues; older ones stay until they overflow.
- The callback runs under the synchroniser's non-reentrant lock. If it raises, the genuine lock stays held and
  every later message blocks; the fallback releases it. ``CameraSetSync`` never lets a callback raise, so the
  node sees no difference.

``CameraSetSync`` adds what the node needs on either library: counters (message_filters has no drop callback),
no message older than the last set ever used again, a reset on time jumps, degraded sets without stale cameras,
stamps far from their siblings' refused, and callback errors counted.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import rclpy.logging
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile

from gsdocc_ros.ros.backends import FALLBACK, genuine
from gsdocc_ros.ros.camera_liveness import CameraLiveness, StampVerdict
from gsdocc_ros.ros.conversions import stamp_to_ns


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
    """message_filters.ApproximateTimeSynchronizer stand-in following its contract (module docstring)."""

    def __init__(self, fs: Sequence[Any], queue_size: int, slop: float) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {queue_size}")
        if not slop >= 0:
            raise ValueError(f"slop: must be >= 0 seconds, got {slop}")
        self.queue_size = queue_size
        self.slop_ns = Duration(seconds=slop).nanoseconds  # rclpy's rounding, as message_filters
        self.queues: list[dict[int, Any]] = [{} for _ in fs]
        self.lock = threading.Lock()
        for index, f in enumerate(fs):
            f.registerCallback(self.add, index)

    def add(self, msg: Any, index: int) -> None:
        """Queue ``msg`` of input ``index``; emit the first set that contains it and spans less than slop."""
        stamp = _header_ns(msg)
        with self.lock:
            queue = self.queues[index]
            queue[stamp] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
            if stamp not in queue:  # it was the oldest and overflowed at once
                return
            found = self._first_set(stamp, index)
            if found is None:
                return
            msgs = [queue_j.pop(stamp_j) for queue_j, stamp_j in zip(self.queues, found)]
            self.signalMessage(*msgs)

    def _first_set(self, stamp: int, index: int) -> list[int] | None:
        """Stamps (one per input) of the first combination around ``stamp`` spanning less than slop, or None."""
        near: list[list[int]] = []
        for other, queue in enumerate(self.queues):
            if other == index:
                continue
            close = [s for s in queue if abs(s - stamp) <= self.slop_ns]
            if not close:
                return None
            near.append(sorted(close, key=lambda s: abs(s - stamp)))  # stable: ties keep arrival order
        for combination in itertools.product(*near):
            stamps = [*combination[:index], stamp, *combination[index:]]
            if max(stamps) - min(stamps) < self.slop_ns:
                return stamps
        return None


_message_filters = genuine("message_filters")
if _message_filters is not None:
    SimpleFilter = _message_filters.SimpleFilter
    Subscriber = _message_filters.Subscriber
    ApproximateTimeSynchronizer = _message_filters.ApproximateTimeSynchronizer
else:
    SimpleFilter = FallbackSimpleFilter
    Subscriber = FallbackSubscriber
    ApproximateTimeSynchronizer = FallbackApproximateTimeSynchronizer

BACKEND = "message_filters" if _message_filters is not None else FALLBACK
"""Which synchroniser this process uses (for logs and diagnostics)."""


@dataclass(frozen=True)
class SyncCounters:
    """What CameraSetSync has seen since start; ``CameraSetSync.counters()`` returns these fields as a dict."""

    messages_in: int = 0
    """Messages received on all inputs."""
    sets_out: int = 0
    """Sets handed to the callback (complete or degraded)."""
    messages_dropped: int = 0
    """Messages that left without being in a set: stale (not newer than the last set), queue overflow, replaced
    by another with the same stamp, superseded by a newer set, from a stale camera, or discarded by a reset."""
    incomplete_sets: int = 0
    """Camera periods that yielded no set (a camera missing, or stamps spread wider than slop), counted as the
    most messages any one input has lost to overflow, supersession or reset: in such a period every camera
    that delivered loses exactly one image. A lower bound when different cameras fail in different periods."""
    resets: int = 0
    """Times the rig's time line jumped (a majority of cameras moved more than ``jump_s`` back or ahead,
    camera_liveness.py) or reset() was called, and the queues were emptied."""
    callback_errors: int = 0
    """Exceptions raised by a set callback (logged; the synchroniser and the other callbacks go on)."""
    stamp_outliers: int = 0
    """Messages refused because their stamp was far from their siblings' (a camera's clock is off)."""
    camera_timeouts: int = 0
    """Times a camera went stale (no stamp within ``camera_timeout_s`` of its siblings')."""
    degraded_sets: int = 0
    """Sets handed on without the stale cameras (counted in sets_out too)."""


class CameraSetSync:
    """Approximate-time synchroniser over N inputs on either library, with counters, resets, safe callbacks and
    degraded sets when cameras go stale.

    Every input passes through this object first. It keeps a copy of each input's queue that follows the
    synchroniser's own rules (module docstring), so it knows which messages a set leaves behind. When a set
    comes out, the messages queued at or before its newest stamp are dropped (counted) and the synchroniser is
    rebuilt with only the newer ones, so no later set reuses an image older than the last set; messages not newer
    than the last set are dropped on arrival. Sets are therefore strictly increasing in time, with the same sets
    from either library.

    Each stamp is judged by a CameraLiveness (camera_liveness.py). An input whose stamps fall ``camera_timeout_s``
    behind its siblings' is stale: the synchroniser is rebuilt over the live inputs only, and their sets reach the
    callback with None in the stale inputs' places. A stale input's next message on the rig's time line makes it
    live again: the synchroniser is rebuilt over all and the next set includes it. A message far from its
    siblings' stamps is refused (counted); when a majority of inputs jump together (bag loop, simulator restart)
    the queues are emptied and the messages that announced the jump are replayed on the new time line;
    ``reset()`` empties them on demand. A callback that raises is counted and logged, never passed on.
    """

    def __init__(self, inputs: Sequence[Any], queue_size: int, slop: float, jump_s: float = 1.0,
                 camera_timeout_s: float = math.inf) -> None:
        if len(inputs) < 1:
            raise ValueError("inputs: at least one input filter is needed")
        self.queue_size = queue_size
        self.slop = slop
        self._callbacks: list[Callable[..., None]] = []
        self._lock = threading.RLock()
        self._counters = SyncCounters()
        self._liveness = CameraLiveness(len(inputs), camera_timeout_s, jump_s)
        self._queued: list[dict[int, tuple[int, Any]]] = [{} for _ in inputs]  # per input: stamp -> (seq, msg)
        self._off_line: list[tuple[int, Any] | None] = [None] * len(inputs)  # per input: a refused (seq, msg)
        self._seq = 0
        self._lost = [0] * len(inputs)  # per input: messages lost to overflow, supersession or reset
        self._last_set: int | None = None
        self._stale: frozenset[int] = frozenset()
        self._rebuild = False
        self._build()
        for index, source in enumerate(inputs):
            source.registerCallback(self._receive, index)

    def registerCallback(self, cb: Callable[..., None]) -> None:  # noqa: N802 - message_filters name
        """Call ``cb(*msgs)`` with one entry per input, in input order, for every set: the message, or None for a
        stale input."""
        self._callbacks.append(cb)

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters by SyncCounters field name (messages_in, sets_out, ...)."""
        with self._lock:
            return asdict(self._counters)

    def stale(self) -> frozenset[int]:
        """Indices of the inputs left out of sets now."""
        with self._lock:
            return self._stale

    def lag_s(self, index: int) -> float | None:
        """How far (s) input ``index``'s newest stamp is behind the rig's time (negative: ahead); None before its
        first."""
        with self._lock:
            return self._liveness.lag_s(index)

    def reset(self) -> None:
        """Empty every queue (queued messages count as dropped), forget the last set and every camera's stamps;
        counts a reset."""
        with self._lock:
            self._liveness.reset()
            self._empty_queues()

    def _empty_queues(self) -> None:
        """Drop every queued and refused message, forget the last set and the stale inputs; count a reset."""
        lost = [len(queue) + (off is not None) for queue, off in zip(self._queued, self._off_line)]
        self._drop(lost)
        self._queued = [{} for _ in self._queued]
        self._off_line = [None] * len(self._queued)
        self._last_set = None
        self._stale = frozenset()
        self._count(resets=1)
        self._build()

    def _build(self) -> None:
        """A fresh synchroniser fed by one relay per live input."""
        self._live = [i for i in range(len(self._queued)) if i not in self._stale]
        self._relays = {i: SimpleFilter() for i in self._live}
        sync = ApproximateTimeSynchronizer([self._relays[i] for i in self._live], self.queue_size, self.slop)
        sync.registerCallback(self._emit)

    def _count(self, **deltas: int) -> None:
        """Add ``deltas`` to the counters."""
        self._counters = replace(self._counters, **{k: getattr(self._counters, k) + v for k, v in deltas.items()})

    def _drop(self, lost: list[int]) -> None:
        """Count ``lost[i]`` messages lost by input i, and the incomplete sets that makes."""
        self._lost = [total + n for total, n in zip(self._lost, lost)]
        self._count(messages_dropped=sum(lost), incomplete_sets=max(self._lost) - self._counters.incomplete_sets)

    def _receive(self, msg: Any, index: int) -> None:
        """One input message: stamp verdict, staleness, queue copy, then on to the synchroniser."""
        stamp = _header_ns(msg)
        with self._lock:
            self._count(messages_in=1)
            self._seq += 1
            verdict = self._liveness.observe(index, stamp)
            if verdict is StampVerdict.OUTLIER:
                if self._off_line[index] is not None:
                    self._count(messages_dropped=1)  # an older refused message of this input
                self._off_line[index] = (self._seq, msg)
                self._count(stamp_outliers=1)
                return
            arrivals = [(self._seq, index, msg)]
            if verdict is StampVerdict.TIME_JUMP:  # replay the messages that announced the new time line
                announced = [(off[0], i, off[1]) for i, off in enumerate(self._off_line) if off is not None]
                self._off_line = [None] * len(self._queued)
                self._count(stamp_outliers=-len(announced))  # they were not outliers after all
                self._empty_queues()
                arrivals = sorted(announced) + arrivals
            for seq, i, m in arrivals:
                self._accept(seq, i, m)

    def _accept(self, seq: int, index: int, msg: Any) -> None:
        """A message on the rig's time line: update the stale inputs, then queue it and feed the synchroniser."""
        stamp = _header_ns(msg)
        self._off_line[index] = None
        stale = self._liveness.stale()
        if stale != self._stale:
            self._count(camera_timeouts=len(stale - self._stale))
            went = sorted(stale - self._stale)
            self._drop([len(self._queued[i]) if i in went else 0 for i in range(len(self._queued))])
            for i in went:
                self._queued[i] = {}
            self._stale = stale
            self._rebuild = True
        if self._last_set is not None and stamp <= self._last_set:
            self._count(messages_dropped=1)  # stale: its period is over (no new incomplete set)
        elif index in self._stale:
            self._count(messages_dropped=1)  # its camera is left out until it catches up
        else:
            self._enqueue(index, stamp, seq, msg)
            if not self._rebuild:
                self._relays[index].signalMessage(msg)
        while self._rebuild:  # outside the synchroniser's lock now: start a new one with what is left
            self._rebuild = False
            self._build()
            waiting = sorted((s, i, m) for i, queue in enumerate(self._queued) for s, m in queue.values())
            for _, i, m in waiting:
                self._relays[i].signalMessage(m)

    def _enqueue(self, index: int, stamp: int, seq: int, msg: Any) -> None:
        """Copy one arrival into input ``index``'s queue as the synchroniser keeps it (replace, oldest overflows)."""
        queue = self._queued[index]
        lost = int(stamp in queue)  # the same stamp again replaces the queued message
        queue[stamp] = (seq, msg)
        while len(queue) > self.queue_size:
            del queue[min(queue)]
            lost += 1
        if lost:
            self._drop([lost if i == index else 0 for i in range(len(self._queued))])

    def _emit(self, *msgs: Any) -> None:
        """A set from the synchroniser (live inputs only): drop what it leaves behind, count it, call the callbacks
        with None in the stale inputs' places (never raises)."""
        stamps = [_header_ns(msg) for msg in msgs]
        newest = max(stamps)
        with self._lock:
            full: list[Any] = [None] * len(self._queued)
            for index, msg, stamp in zip(self._live, msgs, stamps):
                full[index] = msg
                self._queued[index].pop(stamp, None)
            behind = [[s for s in queue if s <= newest] for queue in self._queued]
            if any(behind):  # superseded: the synchroniser would keep them, a later set must not use them
                for queue, old in zip(self._queued, behind):
                    for s in old:
                        del queue[s]
                self._drop([len(old) for old in behind])
                self._rebuild = True
            self._count(sets_out=1, degraded_sets=int(len(self._live) < len(self._queued)))
            self._last_set = newest
            callbacks = list(self._callbacks)
        for cb in callbacks:
            try:
                cb(*full)
            except Exception as error:  # a raising callback would leave message_filters' lock held for ever
                with self._lock:
                    self._count(callback_errors=1)
                rclpy.logging.get_logger("gsdocc.sync").error(
                    f"camera set callback failed: {type(error).__name__}: {error}", throttle_duration_sec=5.0)
