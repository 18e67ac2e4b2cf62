"""The node's counters, by name: what /diagnostics reports, and what the node, the demo and the soak count with.

A StrEnum, so a member is its own name string (``counters[NodeCounter.SETS_IN]`` and ``"sets_in"`` are the same
key). The synchroniser's counters (sync.SyncCounters) are reported with a ``sync_`` prefix.
"""

from __future__ import annotations

from enum import StrEnum


class NodeCounter(StrEnum):
    """Every counter of the occupancy node (the synchroniser's with the sync_ prefix)."""

    SETS_IN = "sets_in"
    """Complete camera sets handed over by the synchroniser."""
    SETS_SKIPPED_CADENCE = "sets_skipped_cadence"
    """Sets not inferred: not a history step at the keyframe cadence."""
    SETS_DROPPED_BUSY = "sets_dropped_busy"
    """Sets replaced by a newer one while the node was busy."""
    SETS_ABANDONED = "sets_abandoned"
    """Sets still in the network when the node stopped: not published."""
    GRIDS_OUT = "grids_out"
    """Grids published."""
    GRIDS_DEGRADED = "grids_degraded"
    """Grids computed without some camera (stale, or its image unreadable)."""
    DECODE_ERRORS = "decode_errors"
    TF_FAILURES = "tf_failures"
    TF_INVALID = "tf_invalid"
    CAMERA_INFO_MISSING = "camera_info_missing"
    CAMERA_INFO_INVALID = "camera_info_invalid"
    IMAGE_SIZE_MISMATCH = "image_size_mismatch"
    INTRINSICS_RESCALED = "intrinsics_rescaled"
    """Sets whose images were a uniform resize of their CameraInfo size (used, with rescaled intrinsics)."""
    ERRORS = "errors"
    """Unexpected exceptions while preparing or inferring a set."""
    OUT_OF_MEMORY = "out_of_memory"
    CACHE_RESETS = "cache_resets"
    TIME_JUMPS_BACK = "time_jumps_back"
    """Camera stamps that went backwards (bag loop)."""
    TF_BUFFER_CLEARS = "tf_buffer_clears"
    """Times the tf listener cleared the buffer because tf stamps went backwards."""
    CLOCK_JUMPS_BACK = "clock_jumps_back"
    """Backwards jumps of the node clock (sim time from a looping bag)."""
    SYNC_MESSAGES_IN = "sync_messages_in"
    SYNC_SETS_OUT = "sync_sets_out"
    SYNC_MESSAGES_DROPPED = "sync_messages_dropped"
    SYNC_INCOMPLETE_SETS = "sync_incomplete_sets"
    SYNC_RESETS = "sync_resets"
    SYNC_CALLBACK_ERRORS = "sync_callback_errors"
    SYNC_STAMP_OUTLIERS = "sync_stamp_outliers"
    SYNC_CAMERA_TIMEOUTS = "sync_camera_timeouts"
    SYNC_DEGRADED_SETS = "sync_degraded_sets"


REJECTIONS = (NodeCounter.DECODE_ERRORS, NodeCounter.TF_FAILURES, NodeCounter.TF_INVALID,
              NodeCounter.CAMERA_INFO_MISSING, NodeCounter.CAMERA_INFO_INVALID, NodeCounter.IMAGE_SIZE_MISMATCH)
"""Camera sets the node refused, each counted by why."""

FAILURES = (NodeCounter.ERRORS, NodeCounter.OUT_OF_MEMORY, NodeCounter.SYNC_CALLBACK_ERRORS)
"""Unexpected failures: any rise is an ERROR in /diagnostics."""

SET_OUTCOMES = (NodeCounter.GRIDS_OUT, NodeCounter.SETS_SKIPPED_CADENCE, NodeCounter.SETS_DROPPED_BUSY,
                NodeCounter.SETS_ABANDONED, *REJECTIONS, NodeCounter.ERRORS, NodeCounter.OUT_OF_MEMORY)
"""The ways a set that came in (SETS_IN) ends: once the node is idle, they add up to SETS_IN."""


def sets_in_flight(counters: dict[str, int]) -> int:
    """Sets the node has taken in but not yet ended (0 when idle), from a counters snapshot."""
    return counters.get(NodeCounter.SETS_IN, 0) - sum(counters.get(name, 0) for name in SET_OUTCOMES)
