"""nuScenes sample tokens recovered from a bag, to name recorded grids so that `gsdocc eval score` finds them.

`gsdocc nuscenes-to-bag` writes each keyframe's token on /gsdocc/sample_token with the keyframe's CAM_FRONT
image stamp as bag time; the node stamps a grid with that same CAM_FRONT stamp.
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path

from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.bag_messages import SAMPLE_TOKEN_TOPIC


class TokenMap:
    """CAM_FRONT stamp (ns) -> sample token, read from a bag's /gsdocc/sample_token topic; nearest within a tolerance."""

    def __init__(self, tokens: dict[int, str], tolerance_ns: int = 1_000_000) -> None:
        self._stamps = sorted(tokens)
        self._tokens = tokens
        self.tolerance_ns = tolerance_ns

    def __len__(self) -> int:
        return len(self._stamps)

    @classmethod
    def from_bag(cls, bag: Path, topic: str = SAMPLE_TOKEN_TOPIC) -> TokenMap:
        """Read every message of ``topic`` in ``bag`` (rosbag2 folder or ROS 1 bag) with rosbags."""
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        if not bag.exists():
            raise ToolError(f"bag {bag} does not exist")
        tokens: dict[int, str] = {}
        try:
            with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
                connections = [c for c in reader.connections if c.topic == topic]
                if not connections:
                    raise ToolError(f"bag {bag} has no {topic} topic (topics: "
                                    f"{', '.join(sorted({c.topic for c in reader.connections})) or 'none'})")
                for connection, timestamp, raw in reader.messages(connections=connections):
                    tokens[int(timestamp)] = str(reader.deserialize(raw, connection.msgtype).data)
        except ToolError:
            raise
        except Exception as error:  # rosbags raises its own reader errors for unreadable bags
            raise ToolError(f"bag {bag}: cannot read {topic} ({type(error).__name__}: {error})") from None
        return cls(tokens)

    def lookup(self, stamp_ns: int) -> str | None:
        """The token whose CAM_FRONT stamp is nearest ``stamp_ns``, if within the tolerance."""
        i = bisect.bisect_left(self._stamps, stamp_ns)
        near = [s for s in self._stamps[max(i - 1, 0):i + 1] if abs(s - stamp_ns) <= self.tolerance_ns]
        return self._tokens[min(near, key=lambda s: abs(s - stamp_ns))] if near else None


SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What a sample token may look like to name a file (nuScenes tokens are 32 hex digits)."""


def grid_file_name(stamp_ns: int, tokens: TokenMap | None) -> str:
    """``<token>.npz`` when the stamp maps to a sample token, else ``<stamp_ns>.npz``."""
    token = tokens.lookup(stamp_ns) if tokens is not None else None
    if token is not None and not SAFE_TOKEN.fullmatch(token):  # a token from a bag must not name another folder
        raise ToolError(f"sample token {token!r} from the bag is not a plain file name (letters, digits, - and _)")
    return f"{token or stamp_ns}.npz"


