"""Which cameras of a rig are live, judged on image stamps against their siblings', and when time itself jumped.

Stamps, not arrival times: a bag replayed slowly, or a CPU taking seconds per set, must not make a camera look
dead. The rig's time is the newest stamp reached by at least half of the cameras (a median of their newest
stamps, the higher one for an even count), so neither one camera racing ahead nor the first image of the next
set moves it. The timeout is ``timeout_s`` but never less than PERIODS frame periods (the median gap between a
camera's consecutive stamps): a 2 Hz keyframe replay must not lose cameras between its sets.

- A camera is **stale** when its newest stamp is more than the timeout away from the rig's time: it stopped, it
  lags, or its clock runs ahead; or when it has given nothing while the rig advanced that far from its first
  stamp. Stale cameras are left out of sets; the next stamp that brings one back within the timeout ends it.
- A message more than ``jump_s`` away from the rig's time is an **outlier** of its camera (a wrong clock): it is
  refused and does not move the rig's time.
- When a strict majority of the cameras have each sent such a message since their last accepted one, it is the
  rig's time that **jumped** (bag loop, simulator restart, a pause): the tracker restarts on the new time line
  with those cameras' stamps. A rig of one or two cameras therefore follows a jump only when every camera does.

No ROS inside: the synchroniser (gsdocc_ros.ros.sync.CameraSetSync) feeds it one stamp per message.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

PERIODS = 3
"""The timeout is never shorter than this many frame periods."""


class StampVerdict(Enum):
    """What a message's stamp means for the rig."""

    ACCEPT = "accept"
    """On the rig's time line: use the message."""
    OUTLIER = "outlier"
    """Far from its siblings: refuse the message (its camera may go stale)."""
    TIME_JUMP = "time_jump"
    """A majority moved to a new time line: queued messages are from the old one, the tracker restarted."""


class CameraLiveness:
    """Per-camera newest stamps of a rig of ``cameras`` cameras and the verdict on each new stamp (module rules)."""

    def __init__(self, cameras: int, timeout_s: float, jump_s: float) -> None:
        if cameras < 1:
            raise ValueError(f"cameras: at least one camera is needed, got {cameras}")
        if not timeout_s > 0 or not jump_s > 0:
            raise ValueError(f"timeout_s and jump_s: must be positive, got {timeout_s} and {jump_s}")
        self.cameras = cameras
        self.timeout_ns = math.inf if math.isinf(timeout_s) else round(timeout_s * 1e9)
        self.jump_ns = round(jump_s * 1e9)
        self.reset()

    def reset(self) -> None:
        """Forget every stamp: the next one starts a new time line."""
        self._intervals: deque[int] = deque(maxlen=32)  # recent gaps between a camera's consecutive stamps
        self._newest: list[int | None] = [None] * self.cameras
        self._moved: list[int | None] = [None] * self.cameras  # per camera: its stamp off the time line, if any
        self._start: int | None = None

    def _reference(self) -> int | None:
        """The rig's time: the newest stamp that at least half of the cameras that gave one have reached."""
        newest = sorted((s for s in self._newest if s is not None), reverse=True)
        return newest[(len(newest) - 1) // 2] if newest else None

    def observe(self, index: int, stamp_ns: int) -> StampVerdict:
        """The verdict on camera ``index``'s new stamp, updating the rig's state."""
        reference = self._reference()
        if reference is None or abs(stamp_ns - reference) <= self.jump_ns:
            self._accept(index, stamp_ns)
            return StampVerdict.ACCEPT
        self._moved[index] = stamp_ns
        moved = {i: s for i, s in enumerate(self._moved) if s is not None}
        if 2 * len(moved) <= self.cameras:
            return StampVerdict.OUTLIER
        self.reset()
        for i, stamp in sorted(moved.items(), key=lambda item: item[1]):
            self._accept(i, stamp)
        return StampVerdict.TIME_JUMP

    def _accept(self, index: int, stamp_ns: int) -> None:
        """Camera ``index`` gave ``stamp_ns`` on the rig's time line."""
        newest = self._newest[index]
        if newest is not None and stamp_ns > newest:
            self._intervals.append(stamp_ns - newest)
        self._newest[index] = stamp_ns if newest is None else max(newest, stamp_ns)
        self._moved[index] = None
        if self._start is None:
            self._start = stamp_ns

    def timeout(self) -> float:
        """The timeout in nanoseconds now: ``timeout_s``, or PERIODS frame periods when that is longer."""
        if not self._intervals:
            return self.timeout_ns
        return max(self.timeout_ns, PERIODS * sorted(self._intervals)[len(self._intervals) // 2])

    def stale(self) -> frozenset[int]:
        """Indices of the cameras that are stale now (module rules); never every camera."""
        reference = self._reference()
        if reference is None:
            return frozenset()
        timeout = self.timeout()
        return frozenset(i for i, newest in enumerate(self._newest)
                         if abs(reference - (self._start if newest is None else newest)) > timeout)

    def lag_s(self, index: int) -> float | None:
        """How far (s) camera ``index``'s newest stamp is behind the rig's time (negative: ahead); None when it
        gave none."""
        newest, reference = self._newest[index], self._reference()
        if newest is None or reference is None:
            return None
        return (reference - newest) / 1e9
