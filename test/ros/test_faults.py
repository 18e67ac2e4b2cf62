"""Faults against the running node: each is survived, shows in the counters and /diagnostics, and a later good set
yields a grid, without a restart.

One node (seeded random weights, reduced 64x192 input) serves the module, fed the real nuScenes sample by a
SampleFeeder on a shared timeline (ros_feeder.NodeHarness). A forward takes 10-30 s on two busy CPU cores, so
each test runs as few as it can.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.time import Time  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from gsdocc_ros.model.config import ModelConfig  # noqa: E402
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, load_sample_frames  # noqa: E402
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, StepResult, load_model  # noqa: E402
from gsdocc_ros.ros.conversions import ns_to_stamp, stamp_to_ns  # noqa: E402

from ros_feeder import NodeHarness, node_session  # noqa: E402

INPUT_HW = (64, 192)
SCENE = "scene-0061_ca9a282c"
SET_PERIOD_NS = 83_333_333  # 12 Hz cameras


@pytest.fixture(scope="module")
def harness(shared_data: Path) -> Iterator[NodeHarness]:
    with node_session(shared_data / "nuscenes_sample" / SCENE, {
        "device": "cpu", "allow_random_weights": True, "input_height": INPUT_HW[0], "input_width": INPUT_HW[1],
        "tf_wait_s": 0.5, "diagnostics_period_s": 0.2,
    }) as h:
        yield h


@pytest.fixture
def steps(harness: NodeHarness, monkeypatch: pytest.MonkeyPatch) -> list[StepResult]:
    """Every StepResult the node's runner returns during the test (the runner itself is unchanged)."""
    results: list[StepResult] = []
    step = harness.node.runner.step

    def spy(*args, **kwargs):
        result = step(*args, **kwargs)
        if result is not None:
            results.append(result)
        return result

    monkeypatch.setattr(harness.node.runner, "step", spy)
    return results


def counter(harness: NodeHarness, name: str) -> int:
    return harness.node.counters[name]


def value(values: dict[str, str], name: str) -> int:
    """A counter as /diagnostics reports it (absent until it first rises)."""
    return int(values.get(name, 0))


def ensure_history(harness: NodeHarness) -> None:
    """A grid before this test's fault, so that the fault (not the first frame) is what resets the cache."""
    if not harness.grids:
        harness.publish_and_wait_grid()


def publish_received(harness: NodeHarness, offset_ns: int, **kwargs) -> None:
    """Publish a set and spin until the synchroniser has received its images (no burst for the transport to drop)."""
    received = harness.node.sync.counters()["messages_in"]
    cameras = len(kwargs.get("cameras", CAMERA_NAMES))
    harness.feed.publish_set(offset_ns, **kwargs)
    assert harness.spin_until(lambda: harness.node.sync.counters()["messages_in"] == received + cameras, 30.0)


def test_camera_stops_and_comes_back(harness: NodeHarness) -> None:
    """CAM_BACK silent for two sets, less than its timeout (three 0.5 s periods; longer silences give degraded grids,
    test_node.py): nothing reaches the worker, the sync counts the loss, the next set goes through."""
    sync_before, errors, start = harness.node.sync.counters(), counter(harness, "errors"), len(harness.diagnostics)
    in_before = counter(harness, "sets_in")
    others = [name for name in CAMERA_NAMES if name != "CAM_BACK"]
    for _ in range(2):
        publish_received(harness, harness.next_offset(), cameras=others)
    harness.publish_and_wait_grid()
    sync = harness.node.sync.counters()
    assert sync["messages_dropped"] - sync_before["messages_dropped"] == 2 * len(others)  # superseded by the good set
    assert sync["degraded_sets"] == sync_before["degraded_sets"]
    assert sync["incomplete_sets"] > sync_before["incomplete_sets"]
    assert counter(harness, "sets_in") == in_before + 1 and counter(harness, "errors") == errors
    harness.wait_diagnostics(lambda v: value(v, "sync_incomplete_sets") == sync["incomplete_sets"], start)
    warned = [s for s in harness.diagnostic_statuses(start) if "sync_incomplete_sets +" in s.message]
    assert warned and all(s.level == DiagnosticStatus.WARN for s in warned), [s.message for s in warned]


def test_tf_stops_and_comes_back(harness: NodeHarness) -> None:
    """No /tf for two sets: each is rejected after tf_wait_s as a tf failure (ERROR: no grid), then tf returns."""
    failures, start = counter(harness, "tf_failures"), len(harness.diagnostics)
    for n in (1, 2):
        harness.feed.publish_set(harness.next_offset(), tf=False)
        assert harness.spin_until(lambda: counter(harness, "tf_failures") == failures + n), dict(harness.node.counters)
    status = harness.wait_diagnostics(lambda v: value(v, "tf_failures") == failures + 2, start)
    assert status.level == DiagnosticStatus.ERROR  # the report with the second failure: rejected, no grid
    assert "tf_failures +1" in status.message and "no grid published" in status.message
    harness.publish_and_wait_grid()
    assert counter(harness, "tf_failures") == failures + 2


def test_bag_loop_resets_sync_tf_and_cache(harness: NodeHarness, steps: list[StepResult]) -> None:
    """Stamps (images and tf) jump 20 s back, as when a bag loops: the synchroniser, the tf buffer and the temporal
    cache all restart, and the set after the jump gives a grid."""
    ensure_history(harness)
    jumps, resets = counter(harness, "time_jumps_back"), counter(harness, "cache_resets")
    start = len(harness.diagnostics)
    sync_resets = harness.node.sync.counters()["resets"]
    tf_clears = counter(harness, "tf_buffer_clears")
    harness.offset_ns -= 40 * NodeHarness.STEP_NS
    harness.publish_and_wait_grid()
    assert counter(harness, "time_jumps_back") == jumps + 1 and counter(harness, "cache_resets") == resets + 1
    assert harness.node.sync.counters()["resets"] == sync_resets + 1
    assert counter(harness, "tf_buffer_clears") == tf_clears + 1  # on either tf backend
    assert steps[-1].start_of_sequence and "time went backwards" in steps[-1].reset_reason
    harness.wait_diagnostics(lambda v: value(v, "time_jumps_back") == jumps + 1
                             and value(v, "cache_resets") == resets + 1, start)


def test_clock_jumps_forward_by_minutes(harness: NodeHarness, steps: list[StepResult]) -> None:
    """Sim time (use_sim_time, /clock) and the stamps jump 5 minutes ahead: the gap resets the cache (max_gap_s),
    the node's clock and its /diagnostics timer follow the jump, and a grid comes out."""
    ensure_history(harness)
    node, jump_ns = harness.node, 600 * NodeHarness.STEP_NS
    clock_pub = harness.tester.create_publisher(Clock, "/clock", 10)
    offset = harness.next_offset() + jump_ns
    harness.offset_ns = offset
    stamps = harness.feed.camera_stamps(offset)
    sim0, wall0 = min(stamps.values()), time.monotonic()  # sim time: the jump, then on at wall-clock pace

    def spin_with_clock(condition: Callable[[], bool], timeout_s: float | None = None) -> bool:
        def tick() -> bool:
            clock_pub.publish(Clock(clock=ns_to_stamp(sim0 + round((time.monotonic() - wall0) * 1e9))))
            return condition()
        return harness.spin_until(tick, timeout_s)

    node.set_parameters([Parameter("use_sim_time", value=True)])
    try:
        resets, grids = counter(harness, "cache_resets"), len(harness.grids)
        assert spin_with_clock(lambda: node.get_clock().now().nanoseconds >= sim0, 30.0)
        start = len(harness.diagnostics)
        harness.feed.publish_set(offset)
        assert spin_with_clock(lambda: len(harness.grids) > grids), dict(node.counters)
        assert stamp_to_ns(harness.grids[-1].header.stamp) == stamps["CAM_FRONT"]
        assert counter(harness, "cache_resets") == resets + 1
        assert steps[-1].start_of_sequence and "since the last history step (max_gap_s" in steps[-1].reset_reason
        # /diagnostics keeps coming after the jump, stamped in the new sim time; latency is on the same clock
        assert spin_with_clock(lambda: any(stamp_to_ns(a.header.stamp) >= sim0 for a in harness.diagnostics[start:]),
                               30.0)
        assert 0 <= node.latency_ms < jump_ns / 1e6  # image stamp to publish on sim time (wall time: years)
    finally:
        node.set_parameters([Parameter("use_sim_time", value=False)])
        harness.tester.destroy_publisher(clock_pub)


@pytest.fixture
def ego_poses(harness: NodeHarness, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The ego2global of every set the node's runner is handed during the test."""
    seen: list[np.ndarray] = []
    step = harness.node.runner.step

    def spy(frames, ego2global, stamp_ns, sequence_id=None):
        seen.append(np.array(ego2global))
        return step(frames, ego2global, stamp_ns, sequence_id)

    monkeypatch.setattr(harness.node.runner, "step", spy)
    return seen


def moved(harness: NodeHarness, dx: float, dy: float) -> dict[str, np.ndarray]:
    """The sample's per-camera ego poses, shifted by (dx, dy) m: another trajectory through the same stamps."""
    poses = {name: np.array(harness.feed.sample.cameras[name]["ego2global"], dtype=np.float64) for name in CAMERA_NAMES}
    for matrix in poses.values():
        matrix[:2, 3] += (dx, dy)
    return poses


def test_short_bag_loop_with_images_before_tf_uses_the_new_trajectory(harness: NodeHarness,
                                                                     ego_poses: list[np.ndarray]) -> None:
    """A loop 4 s back, less than the 10 s tf cache, whose images come before their tf: the old pass's poses at
    those very stamps are still in the buffer, but the node clears it before looking up, so the set is placed by
    the new trajectory's poses (as the offline pipeline would place it)."""
    ensure_history(harness)
    start = harness.offset_ns
    for step in range(1, 10):  # the first pass of the bag: tf at every camera stamp of nine 0.5 s steps ...
        stamps = harness.feed.camera_stamps(start + step * NodeHarness.STEP_NS)
        harness.feed.publish_tf([(stamps[name], pose) for name, pose in moved(harness, 0.0, 0.0).items()])
    harness.offset_ns = start + 9 * NodeHarness.STEP_NS
    harness.publish_and_wait_grid()  # ... and a set at its end
    jumps, clears, grids = counter(harness, "time_jumps_back"), counter(harness, "tf_buffer_clears"), len(harness.grids)
    harness.offset_ns = start + 2 * NodeHarness.STEP_NS  # the bag starts again 4 s earlier, elsewhere
    new_poses = moved(harness, 30.0, -20.0)
    stamp = harness.feed.publish_set(harness.offset_ns, tf=False)
    stamps = harness.feed.camera_stamps(harness.offset_ns)
    harness.feed.publish_tf([(stamps[name], new_poses[name]) for name in CAMERA_NAMES])
    harness.wait_grid(stamp, grids)
    np.testing.assert_allclose(ego_poses[-1], new_poses["CAM_FRONT"], atol=1e-6)
    assert counter(harness, "time_jumps_back") == jumps + 1
    assert counter(harness, "tf_buffer_clears") == clears + 1
    harness.offset_ns = start + 10 * NodeHarness.STEP_NS  # later tests go on after everything published here


def test_sim_clock_jumping_back_clears_tf_and_restarts_sync_and_cache(harness: NodeHarness,
                                                                       steps: list[StepResult]) -> None:
    """Sim time: /clock goes 30 s back (a looping bag replayed with its clock). The node's clock-jump callback
    empties tf and the camera queues and restarts the temporal cache; the next set at the new time is a grid."""
    ensure_history(harness)
    node = harness.node
    clock_pub = harness.tester.create_publisher(Clock, "/clock", 10)
    last = harness.feed.camera_stamps(harness.offset_ns)["CAM_FRONT"]
    node.set_parameters([Parameter("use_sim_time", value=True)])
    try:
        clock_pub.publish(Clock(clock=ns_to_stamp(last)))
        assert harness.spin_until(lambda: node.get_clock().now().nanoseconds == last, 30.0)
        # switching to sim time was a clock change, which clears a tf buffer made with node=: send tf again
        harness.feed.publish_tf([(last, moved(harness, 0.0, 0.0)["CAM_FRONT"])])
        assert harness.spin_until(lambda: node.tf_buffer.can_transform("map", "base_link", Time(nanoseconds=last)),
                                  30.0)
        # counted from here: switching to sim time may itself be seen as a jump (wall time -> bag time)
        jumps, sync_resets = counter(harness, "clock_jumps_back"), node.sync.counters()["resets"]
        harness.offset_ns -= 60 * NodeHarness.STEP_NS
        stamps = harness.feed.camera_stamps(harness.offset_ns)
        clock_pub.publish(Clock(clock=ns_to_stamp(min(stamps.values()))))
        clears = counter(harness, "tf_buffer_clears")
        assert harness.spin_until(lambda: counter(harness, "clock_jumps_back") == jumps + 1, 30.0)
        # the jump itself cleared tf (a /tf message of the old time line still in flight may land after it, and
        # is cleared in turn when the new time line's tf arrives, so the buffer's content is not asserted here)
        assert counter(harness, "tf_buffer_clears") >= clears + 1
        assert node.sync.counters()["resets"] == sync_resets + 1
        grids = len(harness.grids)
        stamp = harness.feed.publish_set(harness.offset_ns)
        harness.wait_grid(stamp, grids)
        assert steps[-1].start_of_sequence
    finally:
        node.set_parameters([Parameter("use_sim_time", value=False)])
        harness.tester.destroy_publisher(clock_pub)


def left_to_right_maxima(values: list[int]) -> int:
    """How many values are larger than every value before them."""
    count, best = 0, None
    for value in values:
        if best is None or value > best:
            count, best = count + 1, value
    return count


def test_out_of_order_burst(harness: NodeHarness) -> None:
    """Eight 12 Hz sets arrive shuffled while the node is busy: the synchroniser emits only sets newer than its
    last (the others' messages counted as dropped), the hand-off keeps the newest, and its grid comes out."""
    base = harness.next_offset()
    offsets = [base + i * SET_PERIOD_NS for i in range(8)]
    order = random.Random(7).sample(range(8), 8)
    emitted = left_to_right_maxima(order)
    assert 1 < emitted < 8  # the seed gives a real mix of fresh and stale sets
    sync_before, node_before = harness.node.sync.counters(), dict(harness.node.counters)
    grids = len(harness.grids)
    with harness.node.prefetcher.paused():  # as while the threads are busy with a long inference
        for i in order:
            received = harness.node.sync.counters()["messages_in"]
            harness.feed.publish_set(offsets[i])
            assert harness.spin_until(lambda: harness.node.sync.counters()["messages_in"] == received + 6, 30.0)
    harness.offset_ns = offsets[-1]
    harness.wait_grid(harness.feed.camera_stamps(offsets[-1])["CAM_FRONT"], grids)
    sync = harness.node.sync.counters()
    assert sync["sets_out"] - sync_before["sets_out"] == emitted
    assert sync["messages_dropped"] - sync_before["messages_dropped"] == 6 * (8 - emitted)  # stale on arrival
    counters = harness.node.counters
    assert counters["sets_in"] - node_before.get("sets_in", 0) == emitted
    assert counters["sets_dropped_busy"] - node_before.get("sets_dropped_busy", 0) == emitted - 1
    assert counters["errors"] == node_before.get("errors", 0)
    assert len(harness.grids) == grids + 1


def test_camera_info_change_uses_new_intrinsics(harness: NodeHarness, shared_data: Path,
                                                steps: list[StepResult]) -> None:
    """Focal lengths 15% longer mid-run: the BEV-pool indices are rebuilt (one cache miss) and the lifted voxel
    features equal an offline run's with the new intrinsics, not the old ones; back to the old CameraInfo, the
    indices are rebuilt again. (Random weights give labels that hardly depend on the input: the features show it.)"""
    sample = load_sample_frames(shared_data / "nuscenes_sample" / SCENE)
    longer = {f.name: f.intrinsics * [[1.15], [1.15], [1.0]] for f in sample.frames}
    model, _ = load_model(None, ModelConfig.for_input_size(*INPUT_HW), allow_random_weights=True)
    projection = harness.node.runner.model.forward_projection
    misses = projection.index_cache_misses
    lifted: dict[str, torch.Tensor] = {}  # channel sums of the lifted features (B, Y, X, Z), by run

    def record(name: str) -> Callable:
        def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            lifted[name] = output.detach().float().sum(dim=1)  # (B, C, Y, X, Z) -> (B, Y, X, Z)
        return hook

    hooks = [projection.register_forward_hook(record("node")),
             model.forward_projection.register_forward_hook(record("offline"))]
    try:
        harness.node.runner.reset("test: compare first frames")
        harness.publish_and_wait_grid(info=lambda name, stamp: harness.feed.camera_info(name, stamp, k=longer[name]))
        assert projection.index_cache_misses == misses + 1 and steps[-1].start_of_sequence
        node_new = lifted.pop("node")
        frames = [dataclasses.replace(f, intrinsics=longer[f.name]) for f in sample.frames]
        assert OccupancyRunner(model, RunnerConfig()).step(frames, sample.key_ego2global, sample.stamp_ns)

        harness.node.runner.reset("test: compare first frames")
        harness.publish_and_wait_grid()
        assert projection.index_cache_misses == misses + 2 and steps[-1].start_of_sequence
    finally:
        for hook in hooks:
            hook.remove()
    scale = float(lifted["offline"].abs().max())

    def differing(a: torch.Tensor, b: torch.Tensor) -> float:
        """Fraction of the voxels lifted to in either run whose features differ."""
        lifted_to = (a != 0) | (b != 0)
        return float(((a - b).abs() > 1e-4 * scale)[lifted_to].float().mean())

    # tf round-trips the calibration through quaternions: a voxel boundary or two may move
    assert differing(node_new, lifted["offline"]) < 1e-3
    assert differing(lifted["node"], lifted["offline"]) > 0.1, "the old intrinsics lift the same features"


def test_out_of_memory_for_one_set(harness: NodeHarness, monkeypatch: pytest.MonkeyPatch,
                                   steps: list[StepResult]) -> None:
    """The network raises torch.OutOfMemoryError once: counted (not as an error), the cache restarts, and the next
    set is processed normally."""
    model = harness.node.runner.model
    forward = model.forward
    calls: list[int] = []

    def out_of_memory_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", out_of_memory_once)
    oom, errors, start = counter(harness, "out_of_memory"), counter(harness, "errors"), len(harness.diagnostics)
    grids = len(harness.grids)
    harness.feed.publish_set(harness.next_offset())
    assert harness.spin_until(lambda: counter(harness, "out_of_memory") == oom + 1), dict(harness.node.counters)
    assert len(harness.grids) == grids
    harness.publish_and_wait_grid()
    assert len(calls) == 2 and counter(harness, "errors") == errors
    assert steps[-1].start_of_sequence and "out of memory" in steps[-1].reset_reason
    harness.wait_diagnostics(lambda v: value(v, "out_of_memory") == oom + 1, start)
