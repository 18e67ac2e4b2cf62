"""Which cameras of a rig are live, judged on image stamps against their siblings', and when time itself jumped.

Stamps, not arrival times: a bag replayed slowly, or a CPU taking seconds per set, must not make a camera look
dead. The rig's time is the newest stamp any camera has given on the current time line.

- A camera is **stale** when the rig's time is more than ``timeout_s`` ahead of its own newest stamp (it stopped,
  or lags that much), or when it has given nothing while the rig advanced that far from its first stamp.
- A message more than ``timeout_s`` ahead of the rig's time, or more than ``jump_back_s`` behind it, is an
  **outlier** of its camera (a wrong clock): it is refused and its camera does not advance, so a camera whose
  clock is off goes stale instead of dragging the rig with it.
- When a strict majority of the cameras have each sent such a message since their last accepted one, it is the
  rig's time that **jumped** (bag loop, simulator restart, a pause): the tracker restarts on the new time line
  with those cameras' stamps. A rig of one or two cameras therefore follows a jump only when every camera does.

No ROS inside: the synchroniser (gsdocc_ros.ros.sync.CameraSetSync) feeds it one stamp per message.
"""

from __future__ import annotations

import math
from enum import Enum


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

    def __init__(self, cameras: int, timeout_s: float, jump_back_s: float) -> None:
        if cameras < 1:
            raise ValueError(f"cameras: at least one camera is needed, got {cameras}")
        if not timeout_s > 0 or not jump_back_s > 0:
            raise ValueError(f"timeout_s and jump_back_s: must be positive, got {timeout_s} and {jump_back_s}")
        self.cameras = cameras
        self.timeout_ns = math.inf if math.isinf(timeout_s) else round(timeout_s * 1e9)
        self.jump_ns = round(jump_back_s * 1e9)
        self.reset()

    def reset(self) -> None:
        """Forget every stamp: the next one starts a new time line."""
        self._newest: list[int | None] = [None] * self.cameras
        self._moved: list[int | None] = [None] * self.cameras  # per camera: its stamp off the time line, if any
        self._reference: int | None = None
        self._start: int | None = None

    def observe(self, index: int, stamp_ns: int) -> StampVerdict:
        """The verdict on camera ``index``'s new stamp, updating the rig's state."""
        reference = self._reference
        if reference is None or -self.jump_ns <= stamp_ns - reference <= self.timeout_ns:
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
        self._newest[index] = stamp_ns if newest is None else max(newest, stamp_ns)
        self._moved[index] = None
        self._reference = stamp_ns if self._reference is None else max(self._reference, stamp_ns)
        if self._start is None:
            self._start = stamp_ns

    def stale(self) -> frozenset[int]:
        """Indices of the cameras that are stale now (module rules); never every camera."""
        if self._reference is None:
            return frozenset()
        return frozenset(i for i, newest in enumerate(self._newest)
                         if self._reference - (self._start if newest is None else newest) > self.timeout_ns)

    def lag_s(self, index: int) -> float | None:
        """How far (s) camera ``index``'s newest stamp is behind the rig's time; None when it gave none."""
        newest = self._newest[index]
        if newest is None or self._reference is None:
            return None
        return (self._reference - newest) / 1e9
