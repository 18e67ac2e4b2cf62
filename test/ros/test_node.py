"""The running node on the real middleware: real nuScenes images and tf in, grids, markers and points out, faults
survived.

One node (seeded random weights, reduced 128x352 input to keep CPU time down) serves the whole module;
each test advances the camera stamps by 0.5 s (the keyframe cadence), so the tests share one timeline.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, PointCloud2  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from gsdocc_ros.model.config import ModelConfig  # noqa: E402
from gsdocc_ros.msg import SemanticVoxelGrid  # noqa: E402
from gsdocc_ros.pipeline.frames import CAMERA_NAMES  # noqa: E402
from gsdocc_ros.pipeline.geometry import ego_motion  # noqa: E402
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX  # noqa: E402
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model  # noqa: E402
from gsdocc_ros.ros.conversions import grid_from_message, ns_to_stamp  # noqa: E402
from gsdocc_ros.ros.node import OccupancyNode  # noqa: E402
from gsdocc_ros.ros.point_cloud import read_points  # noqa: E402

from ros_feeder import NodeHarness, SampleFeeder, node_session, spin_until, wait_for_subscribers  # noqa: E402

INPUT_HW = (128, 352)
STEP_NS = 500_000_000
WAIT_S = 180.0


class Harness(NodeHarness):
    """The shared node harness, plus MarkerArray and PointCloud2 listeners and the bad-input-then-recover routine."""

    def __init__(self, scene_dir: Path, parameters: dict) -> None:
        super().__init__(scene_dir, parameters, wait_s=WAIT_S)
        self.feed_dir = scene_dir
        self.markers: list[MarkerArray] = []
        self.tester.create_subscription(MarkerArray, "/gsdocc/markers", self.markers.append, 10)
        self.points: list[PointCloud2] = []
        self.tester.create_subscription(PointCloud2, "/gsdocc/occupied_points", self.points.append, 10)

    def expect_counter(self, counter: str, publish) -> None:
        """Publish a bad set, see ``counter`` rise, then see the node recover on a good set."""
        before = self.node.counters[counter]
        publish(self.next_offset())
        assert self.spin_until(lambda: self.node.counters[counter] > before), \
            f"{counter} did not rise; counters {dict(self.node.counters)}"
        self.publish_and_wait_grid()


@pytest.fixture(scope="module")
def harness(shared_data: Path) -> Iterator[Harness]:
    parameters = {"device": "cpu", "allow_random_weights": True, "input_height": INPUT_HW[0],
                  "input_width": INPUT_HW[1], "publish_camera_mask": True, "tf_wait_s": 0.5,
                  "diagnostics_period_s": 0.2}
    with node_session(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c", parameters, Harness) as h:
        yield h


@pytest.fixture(scope="module")
def offline_labels(shared_data: Path) -> np.ndarray:
    """The same network (same seed) run directly on the sample, without ROS: what the node must publish."""
    from gsdocc_ros.pipeline.frames import load_sample_frames

    sample = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c")
    model, _ = load_model(None, ModelConfig.for_input_size(*INPUT_HW), allow_random_weights=True)
    result = OccupancyRunner(model, RunnerConfig()).step(sample.frames, sample.key_ego2global, sample.stamp_ns)
    assert result is not None
    return result.grid.labels


def _check_grid(msg: SemanticVoxelGrid, expected_labels: np.ndarray) -> None:
    assert msg.header.frame_id == "base_link"
    grid = grid_from_message(msg)  # strict: sizes agree with data
    assert grid.geometry.size == (200, 200, 16) and grid.geometry.voxel_size == pytest.approx(0.4)
    assert grid.geometry.origin == pytest.approx((-40.0, -40.0, -1.0))
    assert list(msg.class_names) == list(CLASS_NAMES) and msg.free_index == FREE_INDEX
    assert grid.confidence is not None and grid.camera_mask is not None
    assert "RANDOM WEIGHTS" in msg.source
    # tf round trips the calibration through quaternions in float64: a handful of float32 ties may differ.
    agreement = float((grid.labels == expected_labels).mean())
    assert agreement > 0.999, f"node and offline runner agree on only {agreement:.4%} of the voxels"


def test_compressed_images_give_the_offline_grid_and_markers(harness: Harness, offline_labels: np.ndarray) -> None:
    msg = harness.publish_and_wait_grid()
    _check_grid(msg, offline_labels)
    assert spin_until(harness.executor, lambda: len(harness.markers) > 0, 30.0), "no MarkerArray"
    markers = harness.markers[-1].markers
    assert markers[0].action == Marker.DELETEALL
    grid = grid_from_message(msg)
    counts = np.bincount(grid.labels.ravel(), minlength=len(CLASS_NAMES))
    drawn = {m.ns: len(m.points) for m in markers[1:]}
    assert "free" not in drawn and all(m.type == Marker.CUBE_LIST for m in markers[1:])
    expected = {CLASS_NAMES[c]: int(n) for c, n in enumerate(counts) if n and c != FREE_INDEX}
    cap = harness.node.params.marker_max_voxels
    assert sum(expected.values()) > cap  # random weights occupy most of the grid: the cap is exercised here
    assert sum(drawn.values()) == cap and set(drawn) <= set(expected)
    assert all(0 < n <= expected[name] for name, n in drawn.items())
    assert spin_until(harness.executor, lambda: len(harness.points) > 0, 30.0), "no PointCloud2"
    points = read_points(harness.points[-1])
    occupied = np.flatnonzero(grid.labels != FREE_INDEX)
    assert harness.points[-1].header.stamp == msg.header.stamp and len(points) == len(occupied)
    np.testing.assert_array_equal(points["label"], grid.labels.ravel()[occupied])
    np.testing.assert_array_equal(points["confidence"], grid.confidence.ravel()[occupied])


def test_raw_images_give_the_same_grid(harness: Harness, offline_labels: np.ndarray) -> None:
    """sensor_msgs/Image rgb8 on the same topics' raw twins: a second node configured for raw input."""
    node = OccupancyNode(parameter_overrides=[
        Parameter("device", value="cpu"), Parameter("allow_random_weights", value=True),
        Parameter("input_height", value=INPUT_HW[0]), Parameter("input_width", value=INPUT_HW[1]),
        Parameter("publish_camera_mask", value=True), Parameter("image_types", value=["raw"] * 6),
        Parameter("image_topic_format", value="/{camera}/image_raw"),
    ], namespace="raw")
    grids: list[SemanticVoxelGrid] = []
    harness.tester.create_subscription(SemanticVoxelGrid, "/raw/gsdocc/occupancy", grids.append, 10)
    feed = SampleFeeder(harness.tester, harness.feed_dir, raw=True, image_topic="/{camera}/image_raw")
    harness.executor.add_node(node)
    try:
        wait_for_subscribers(harness.executor, list(feed.image_pubs.values()))
        feed.publish_set(harness.next_offset())
        assert spin_until(harness.executor, lambda: len(grids) > 0, WAIT_S), f"no grid: {dict(node.counters)}"
        _check_grid(grids[-1], offline_labels)
    finally:
        harness.executor.remove_node(node)
        node.destroy_node()


def test_ego_motion_handed_to_the_model_comes_from_the_poses(harness: Harness, shared_data: Path) -> None:
    """A real 20 s pose sequence (scene-0103) drives tf; the motion the runner receives equals the poses' motion."""
    poses = json.loads((shared_data / "nuscenes_sample" / "mini_val_poses" / "poses.json").read_text())
    keyframes = poses["scenes"]["scene-0103"]["keyframes"][:4]
    seen: list[tuple[int, np.ndarray, bool]] = []
    step = harness.node.runner.step

    def spy(frames, ego2global, stamp_ns, sequence_id=None):
        result = step(frames, ego2global, stamp_ns, sequence_id)
        if result is not None:
            seen.append((stamp_ns, result.curr_to_prev_ego, result.start_of_sequence))
        return result

    harness.node.runner.step = spy
    try:
        base = harness.next_offset(10)  # a gap: the cache restarts at the first keyframe of the sequence
        front_poses = []
        for index, keyframe in enumerate(keyframes):
            cams = keyframe["cameras"]
            # the sample's images, with this keyframe's stamps spacing (0.5 s steps) and its real per-camera poses
            offset = base + index * STEP_NS
            poses_by_cam = {name: np.asarray(cams[name]["ego2global"]) for name in CAMERA_NAMES}
            front_poses.append(poses_by_cam["CAM_FRONT"])
            before = len(harness.grids)
            harness.feed.publish_set(offset, poses=poses_by_cam)
            assert spin_until(harness.executor, lambda: len(harness.grids) > before, WAIT_S)
        harness.offset_ns = base + (len(keyframes) - 1) * STEP_NS
    finally:
        harness.node.runner.step = step
    assert [start for _, _, start in seen] == [True] + [False] * (len(keyframes) - 1)
    for index in range(1, len(keyframes)):
        expected = ego_motion(front_poses[index - 1], front_poses[index])
        np.testing.assert_allclose(seen[index][1], expected, atol=1e-6)
        assert np.linalg.norm(expected[:3, 3]) > 1.0  # the ego really moves in this sequence


def test_reset_service_restarts_the_cache(harness: Harness) -> None:
    client = harness.tester.create_client(Trigger, "/gsdocc/reset")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(Trigger.Request())
    assert spin_until(harness.executor, future.done, 30.0) and future.result().success
    resets = harness.node.counters["cache_resets"]
    harness.publish_and_wait_grid()
    assert harness.node.counters["cache_resets"] == resets + 1


def test_missing_camera_is_counted_and_the_next_set_goes_through(harness: Harness) -> None:
    harness.feed.publish_set(harness.next_offset(), cameras=CAMERA_NAMES[:-1])
    harness.publish_and_wait_grid()
    assert spin_until(harness.executor, lambda: harness.node.sync.counters()["incomplete_sets"] >= 1, 10.0)


def test_a_camera_killed_mid_stream_gives_degraded_grids_then_full_ones(harness: Harness) -> None:
    """CAM_BACK stops: sets stop for the timeout (three 0.5 s periods here), then grids go on without it, its
    sector unseen in the camera mask and /diagnostics saying so; it comes back and the next grid uses it again."""
    node, others = harness.node, [c for c in CAMERA_NAMES if c != "CAM_BACK"]
    full = grid_from_message(harness.publish_and_wait_grid())
    sets_out, degraded, start = node.sync.counters()["sets_out"], node.counters["grids_degraded"], \
        len(harness.diagnostics)
    stamps = [harness.feed.publish_set(harness.next_offset(), cameras=others) for _ in range(3)]
    assert not spin_until(harness.executor, lambda: node.sync.counters()["sets_out"] > sets_out, 2.0)
    stamps.append(harness.feed.publish_set(harness.next_offset(), cameras=others))  # 2 s > 1.5 s after its last
    assert spin_until(harness.executor, lambda: node.sync.counters()["degraded_sets"] > 0, 10.0)
    assert harness.spin_until(lambda: any(g.header.stamp == ns_to_stamp(stamps[-1]) for g in harness.grids))
    assert node.counters["grids_degraded"] > degraded and node.sync.stale() == {CAMERA_NAMES.index("CAM_BACK")}
    blind = grid_from_message(harness.grids[-1])
    assert harness.grids[-1].source.endswith("; degraded, without CAM_BACK")
    behind = (50, 100, 5)  # (-20, 0, 1) m: 20 m behind the car, only CAM_BACK sees it
    assert full.camera_mask[behind] and not blind.camera_mask[behind]
    assert (blind.camera_mask <= full.camera_mask).all() and blind.camera_mask.sum() < 0.9 * full.camera_mask.sum()
    stale = [s for a in harness.diagnostics[start:] for s in a.status if s.name.endswith("/CAM_BACK")]
    assert stale and stale[-1].level == DiagnosticStatus.WARN and "stale" in stale[-1].message
    status = harness.wait_diagnostics(lambda v: v.get("stale_cameras") == "CAM_BACK", start)
    assert status.level == DiagnosticStatus.WARN and status.message.startswith("degraded: grids computed without")
    back = grid_from_message(harness.publish_and_wait_grid())  # CAM_BACK publishes again
    assert node.sync.stale() == frozenset() and back.camera_mask[behind] and "degraded" not in harness.grids[-1].source


def test_corrupt_jpeg_leaves_its_camera_out_of_the_set(harness: Harness) -> None:
    def corrupt(name: str, stamp: int) -> CompressedImage:
        msg = harness.feed.image(name, stamp)
        if name == "CAM_BACK":
            msg.data = bytes(msg.data[: len(msg.data) // 3])
        return msg

    errors = harness.node.counters["decode_errors"]
    msg = harness.publish_and_wait_grid(image=corrupt)  # the others go on: a degraded grid, not a refused set
    assert harness.node.counters["decode_errors"] == errors + 1
    assert msg.source.endswith("; degraded, without CAM_BACK")
    harness.publish_and_wait_grid()


def test_unsupported_encoding_on_every_camera_refuses_the_set(harness: Harness) -> None:
    def png_named_webp(name: str, stamp: int) -> CompressedImage:
        msg = harness.feed.image(name, stamp)
        msg.format = "webp"
        msg.data = b"RIFF\x00\x00\x00\x00WEBPVP8 "
        return msg

    harness.expect_counter("decode_errors", lambda offset: harness.feed.publish_set(offset, image=png_named_webp))


def test_camera_info_with_zeros(harness: Harness) -> None:
    def zeros(name: str, stamp: int):
        return harness.feed.camera_info(name, stamp, k=np.zeros((3, 3)))

    harness.expect_counter("camera_info_invalid", lambda offset: harness.feed.publish_set(offset, info=zeros))


def test_image_size_disagreeing_with_camera_info_is_refused_unless_uniform(harness: Harness) -> None:
    def squashed(name: str, stamp: int):
        return harness.feed.camera_info(name, stamp, size=(1600, 1200))

    harness.expect_counter("image_size_mismatch", lambda offset: harness.feed.publish_set(offset, info=squashed))

    def half_size_info(name: str, stamp: int):
        k = np.asarray(harness.feed.sample.cameras[name]["intrinsics"]) * [[0.5], [0.5], [1.0]]
        return harness.feed.camera_info(name, stamp, k=k, size=(800, 450))

    # CameraInfo for 800x450 while the images are 1600x900: a uniform factor, so K is rescaled (back to the truth)
    before = harness.node.counters["intrinsics_rescaled"]
    harness.publish_and_wait_grid(info=half_size_info)
    assert harness.node.counters["intrinsics_rescaled"] > before


def test_tf_missing_then_back(harness: Harness) -> None:
    harness.expect_counter("tf_failures", lambda offset: harness.feed.publish_set(offset, tf=False))


def test_nan_in_transform(harness: Harness) -> None:
    def publish(offset: int) -> None:
        poses = {name: np.asarray(harness.feed.sample.cameras[name]["ego2global"]) for name in CAMERA_NAMES}
        poses = {name: pose.copy() for name, pose in poses.items()}
        for pose in poses.values():
            pose[0, 3] = np.nan
        harness.feed.publish_set(offset, poses=poses)

    before = harness.node.counters["tf_failures"] + harness.node.counters["tf_invalid"]
    publish(harness.next_offset())
    assert spin_until(harness.executor, lambda: harness.node.counters["tf_failures"]
                      + harness.node.counters["tf_invalid"] > before, WAIT_S)
    harness.publish_and_wait_grid()


def test_time_going_backwards_resets_the_cache(harness: Harness) -> None:
    resets = harness.node.counters["cache_resets"]
    jumps = harness.node.counters["time_jumps_back"]
    harness.offset_ns -= 60 * 1_000_000_000  # a bag loop: a minute back
    harness.publish_and_wait_grid()
    assert harness.node.counters["time_jumps_back"] == jumps + 1
    assert harness.node.counters["cache_resets"] == resets + 1


def test_diagnostics_report_the_counters(harness: Harness) -> None:
    count = len(harness.diagnostics)
    assert spin_until(harness.executor, lambda: len(harness.diagnostics) > count, 10.0)
    status = harness.diagnostics[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["grids_out"]) == harness.node.counters["grids_out"] > 0
    assert values["device"] == "cpu"


def test_bad_checkpoint_stops_start_up(tmp_path: Path, subprocess_env: dict[str, str], python: str) -> None:
    bogus = tmp_path / "gsdocc.pth"
    bogus.write_bytes(b"not a checkpoint")
    run = subprocess.run([python, "-m", "gsdocc_ros.tools.cli", "node", "--ros-args", "-p", "device:=cpu",
                          "-p", f"checkpoint:={bogus}"], env=subprocess_env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1
    assert "start-up failed" in run.stderr + run.stdout and str(bogus.name) in run.stderr + run.stdout
