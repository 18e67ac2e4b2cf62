"""/diagnostics status of the occupancy node: stage latencies, image-to-publish latency, counters, device, level.

Level rules, judged on what changed since the previous report (``previous`` counters; since start if None):

* ERROR: ``errors`` rose (an unexpected exception in the worker), or camera sets were rejected
  (decode, tf, CameraInfo or size problems) and not one grid was published.
* WARN: any rejection or sync miss (``sync_incomplete_sets``), a stamp far from its siblings', a camera going
  stale; no camera message at all; the latency from the key image stamp to publication above ``latency_warn_ms``;
  or a stale camera now (degraded: ``mark_degraded``, with one status per camera from ``camera_statuses``).
* OK otherwise. The message lists every reason found, most severe first.

Counter names are the node's (see DiagnosticRules); unknown counters are reported but do not affect the level.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from gsdocc_ros.ros.counters import FAILURES, REJECTIONS, NodeCounter


@dataclass(frozen=True)
class DiagnosticRules:
    """Which counters and thresholds decide the status level."""

    error_counters: tuple[str, ...] = FAILURES
    """Any rise is an ERROR."""
    reject_counters: tuple[str, ...] = REJECTIONS
    """Camera sets refused by the worker: a rise is a WARN, an ERROR when no grid came out at all."""
    warn_counters: tuple[str, ...] = (NodeCounter.SYNC_INCOMPLETE_SETS, NodeCounter.SYNC_STAMP_OUTLIERS,
                                      NodeCounter.SYNC_CAMERA_TIMEOUTS)
    """Other problems whose rise is a WARN."""
    input_counter: str = NodeCounter.SYNC_MESSAGES_IN
    """Camera messages received; no rise is a WARN (no input)."""
    output_counter: str = NodeCounter.GRIDS_OUT
    """Grids published."""
    latency_warn_ms: float = 1000.0
    """Key image stamp to publication above this is a WARN."""


def status_level(counters: Mapping[str, int], previous: Mapping[str, int] | None, latency_ms: float,
                 rules: DiagnosticRules = DiagnosticRules()) -> tuple[bytes, str]:
    """(DiagnosticStatus level, message) of the change from ``previous`` to ``counters`` (see module rules)."""
    before = previous or {}

    def rise(name: str) -> int:
        return counters.get(name, 0) - before.get(name, 0)

    errors, warnings = [], []
    for name in rules.error_counters:
        if rise(name) > 0:
            errors.append(f"{name} +{rise(name)}")
    rejected = {name: rise(name) for name in rules.reject_counters if rise(name) > 0}
    if rejected and rise(rules.output_counter) <= 0:
        errors.append("no grid published, every camera set was rejected")
    warnings += [f"{name} +{n}" for name, n in rejected.items()]
    warnings += [f"{name} +{rise(name)}" for name in rules.warn_counters if rise(name) > 0]
    if rise(rules.input_counter) <= 0:
        warnings.append("no camera images received")
    if math.isfinite(latency_ms) and latency_ms > rules.latency_warn_ms:
        warnings.append(f"latency {latency_ms:.0f} ms > {rules.latency_warn_ms:.0f} ms")
    if errors:
        return DiagnosticStatus.ERROR, "; ".join(errors + warnings)
    if warnings:
        return DiagnosticStatus.WARN, "; ".join(warnings)
    return DiagnosticStatus.OK, "running"


def build_diagnostics(stamp: TimeMsg, name: str, stage_ms: Mapping[str, float], latency_ms: float,
                      counters: Mapping[str, int], device: str, previous: Mapping[str, int] | None = None,
                      rules: DiagnosticRules = DiagnosticRules()) -> DiagnosticArray:
    """One DiagnosticArray with one status ``name``: level by status_level, then values for latency
    (``latency_ms``, image stamp to publish; NaN before the first grid), each stage (ms) and each counter."""
    level, message = status_level(counters, previous, latency_ms, rules)
    values = [KeyValue(key="device", value=device),
              KeyValue(key="latency_ms", value="n/a" if math.isnan(latency_ms) else f"{latency_ms:.1f}")]
    values += [KeyValue(key=f"stage_{stage}_ms", value=f"{ms:.1f}") for stage, ms in stage_ms.items()]
    values += [KeyValue(key=counter, value=str(count)) for counter, count in sorted(counters.items())]
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=device, values=values)
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


def camera_statuses(node_name: str, cameras: Sequence[str], stale: Collection[int],
                    lags_s: Sequence[float | None], timeout_s: float) -> list[DiagnosticStatus]:
    """One status per camera, named ``<node>/<camera>``: OK while live, WARN while stale (left out of the sets),
    with how far its newest image stamp is behind the rig's."""
    statuses = []
    for index, (camera, lag) in enumerate(zip(cameras, lags_s)):
        lag_text = "no image yet" if lag is None else f"{lag:.3f}"
        if index in stale:
            level, message = DiagnosticStatus.WARN, (f"stale: no image within {timeout_s:g} s of the other cameras' "
                                                     "stamps; camera sets go on without it")
        else:
            level, message = DiagnosticStatus.OK, "live"
        statuses.append(DiagnosticStatus(level=level, name=f"{node_name}/{camera}", message=message,
                                         hardware_id=camera, values=[KeyValue(key="lag_s", value=lag_text)]))
    return statuses


def mark_degraded(status: DiagnosticStatus, stale_cameras: Sequence[str]) -> None:
    """Raise the node's ``status`` to at least WARN and say which cameras its grids are computed without."""
    status.level = max(status.level, DiagnosticStatus.WARN, key=ord)
    reason = f"degraded: grids computed without {', '.join(stale_cameras)} (stale)"
    status.message = reason if status.message == "running" else f"{reason}; {status.message}"
    status.values.append(KeyValue(key="stale_cameras", value=",".join(stale_cameras)))
