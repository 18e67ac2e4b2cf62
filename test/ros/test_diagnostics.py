"""The /diagnostics status: level rules on counter changes, latency, and the reported values."""

from __future__ import annotations

import math


from builtin_interfaces.msg import Time as TimeMsg  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

from gsdocc_ros.ros.diagnostics import DiagnosticRules, build_diagnostics, status_level  # noqa: E402

HEALTHY = {"sync_messages_in": 60, "sets_in": 10, "grids_out": 10}


def test_healthy_period_is_ok() -> None:
    previous = {"sync_messages_in": 30, "sets_in": 5, "grids_out": 5, "decode_errors": 2}
    counters = {**HEALTHY, "decode_errors": 2}  # old errors do not count against this period
    assert status_level(counters, previous, latency_ms=250.0) == (DiagnosticStatus.OK, "running")


def test_problems_in_the_period_warn_with_reasons() -> None:
    previous = dict(HEALTHY)
    counters = {"sync_messages_in": 120, "sets_in": 20, "grids_out": 18, "tf_failures": 2, "sync_incomplete_sets": 1}
    level, message = status_level(counters, previous, latency_ms=1500.0)
    assert level == DiagnosticStatus.WARN
    assert message == "tf_failures +2; sync_incomplete_sets +1; latency 1500 ms > 1000 ms"
    assert status_level(HEALTHY, HEALTHY, math.nan) == (DiagnosticStatus.WARN, "no camera images received")


def test_every_set_rejected_or_an_exception_is_an_error() -> None:
    counters = {"sync_messages_in": 120, "sets_in": 20, "grids_out": 10, "camera_info_missing": 10}
    level, message = status_level(counters, HEALTHY, math.nan)
    assert level == DiagnosticStatus.ERROR
    assert message == "no grid published, every camera set was rejected; camera_info_missing +10"
    level, message = status_level({**HEALTHY, "sync_messages_in": 70, "errors": 1}, HEALTHY, 100.0)
    assert (level, message) == (DiagnosticStatus.ERROR, "errors +1")
    # thresholds are configurable
    assert status_level({**HEALTHY, "sync_messages_in": 70}, HEALTHY, 9000.0,
                        DiagnosticRules(latency_warn_ms=10_000.0))[0] == DiagnosticStatus.OK


def test_message_carries_device_latency_stages_and_counters() -> None:
    stamp = TimeMsg(sec=1_532_402_927, nanosec=612_460_000)
    array = build_diagnostics(stamp, "/gsdocc: occupancy", {"preprocess": 41.25, "network": 9012.0}, 9350.04,
                              {"grids_out": 3, "sync_messages_in": 18, "decode_errors": 1}, "cpu")
    array = deserialize_message(serialize_message(array), type(array))  # survives the wire
    assert array.header.stamp == stamp and len(array.status) == 1
    status = array.status[0]
    assert status.name == "/gsdocc: occupancy" and status.hardware_id == "cpu"
    assert status.level == DiagnosticStatus.WARN  # decode error and latency, counted since start (no previous)
    assert {kv.key: kv.value for kv in status.values} == {
        "device": "cpu", "latency_ms": "9350.0", "stage_preprocess_ms": "41.2", "stage_network_ms": "9012.0",
        "decode_errors": "1", "grids_out": "3", "sync_messages_in": "18"}
    first = build_diagnostics(stamp, "n", {}, math.nan, {}, "cuda:0").status[0]
    assert {kv.key: kv.value for kv in first.values}["latency_ms"] == "n/a"


def test_counter_names_come_from_one_enum() -> None:
    """The synchroniser's counters are NodeCounter members with the sync_ prefix, and every set outcome and
    diagnostic rule names a member (a misspelt counter would never rise)."""
    from dataclasses import fields

    from gsdocc_ros.ros.counters import SET_OUTCOMES, NodeCounter
    from gsdocc_ros.ros.diagnostics import DiagnosticRules
    from gsdocc_ros.ros.sync import SyncCounters

    assert {f"sync_{f.name}" for f in fields(SyncCounters)} == {c for c in NodeCounter if c.startswith("sync_")}
    rules = DiagnosticRules()
    named = [*rules.error_counters, *rules.reject_counters, *rules.warn_counters, rules.input_counter,
             rules.output_counter, *SET_OUTCOMES]
    assert all(isinstance(name, NodeCounter) for name in named)
    assert NodeCounter.SETS_IN not in SET_OUTCOMES and len(set(SET_OUTCOMES)) == len(SET_OUTCOMES)
