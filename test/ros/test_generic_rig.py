"""A rig that is not nuScenes, end to end: config/generic_rig.yaml (five cameras with REP-103 optical frames, raw
Bayer 1920x1200 images on reliable topics, image_fit intrinsics) on the real middleware, checked against the
offline runner on the same pixels and geometry.

The five images are real nuScenes images (all but CAM_BACK) made into 1920x1200 frames of another camera: scaled
by 1.2 to 1920x1080 and given 60 black rows above and below, the intrinsics following (fx 1.2x, cy + 60).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by scripts/setup.sh")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from gsdocc_ros.model.config import ModelConfig  # noqa: E402
from gsdocc_ros.msg import SemanticVoxelGrid  # noqa: E402
from gsdocc_ros.pipeline.frames import CameraFrame, load_sample_frames  # noqa: E402
from gsdocc_ros.pipeline.geometry import camera_to_key_ego  # noqa: E402
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model  # noqa: E402
from gsdocc_ros.ros.conversions import grid_from_message, matrix_to_transform, ns_to_stamp  # noqa: E402
from gsdocc_ros.ros.image_decode import decode_image  # noqa: E402
from gsdocc_ros.ros.node import OccupancyNode  # noqa: E402

from ros_feeder import spin_until  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INPUT_HW = (128, 352)
RIG = {"front_left_camera": "CAM_FRONT_LEFT", "front_camera": "CAM_FRONT", "front_right_camera": "CAM_FRONT_RIGHT",
       "rear_left_camera": "CAM_BACK_LEFT", "rear_right_camera": "CAM_BACK_RIGHT"}
"""The rig's camera names (config/generic_rig.yaml, model order) and the nuScenes camera each one's pixels are."""
RELIABLE = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def to_1920x1200(rgb: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 1600x900 RGB image and its K as a 1920x1200 camera: scaled by 1.2, 60 black rows above and below."""
    scaled = np.asarray(PILImage.fromarray(rgb).resize((1920, 1080), PILImage.Resampling.BICUBIC))
    image = np.zeros((1200, 1920, 3), dtype=np.uint8)
    image[60:1140] = scaled
    k = np.diag([1.2, 1.2, 1.0]) @ np.asarray(k)
    k[1, 2] += 60
    return image, k


def bayer_rggb(rgb: np.ndarray) -> np.ndarray:
    """The RGGB sensor image of ``rgb``."""
    out = np.empty(rgb.shape[:2], dtype=np.uint8)
    for k, channel in enumerate((0, 1, 1, 2)):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, channel]
    return out


@pytest.fixture
def context(monkeypatch: pytest.MonkeyPatch) -> Iterator[rclpy.Context]:
    """rclpy started with --params-file config/generic_rig.yaml, on a fresh domain over shared memory."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "SHM")
    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(REPO / "config" / "generic_rig.yaml")])
    yield context
    rclpy.shutdown(context=context)


def test_five_camera_rep103_rig_with_1920x1200_bayer_images_runs_end_to_end(context: rclpy.Context,
                                                                             shared_data: Path) -> None:
    sample = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c")
    by_name = {f.name: f for f in sample.frames}
    key_pose = np.asarray(sample.cameras["CAM_FRONT"]["ego2global"])
    offset = 10**9
    messages, infos, frames = {}, {}, []
    for camera, source in RIG.items():
        image, k = to_1920x1200(by_name[source].image, by_name[source].intrinsics)
        stamp = by_name[source].stamp_ns + offset
        msg = Image(height=1200, width=1920, encoding="bayer_rggb8", step=1920, data=bayer_rggb(image).tobytes())
        msg.header.stamp, msg.header.frame_id = ns_to_stamp(stamp), f"{camera}_optical_frame"
        info = CameraInfo(height=1200, width=1920, k=k.ravel().tolist(), distortion_model="plumb_bob")
        info.header.frame_id = msg.header.frame_id
        messages[camera], infos[camera] = msg, info
        cam = sample.cameras[source]
        frames.append(CameraFrame(name=camera, image=decode_image(msg), intrinsics=k, stamp_ns=stamp,
                                  cam_to_ego=camera_to_key_ego(cam["sensor2ego"], cam["ego2global"], key_pose)))
    model, _ = load_model(None, ModelConfig.for_input_size(*INPUT_HW), allow_random_weights=True)
    expected = OccupancyRunner(model, RunnerConfig(image_fit="intrinsics", camera_mask=True)).step(
        frames, key_pose, by_name["CAM_FRONT"].stamp_ns + offset).grid

    node = OccupancyNode(context=context, parameter_overrides=[
        Parameter("device", value="cpu"), Parameter("allow_random_weights", value=True),
        Parameter("input_height", value=INPUT_HW[0]), Parameter("input_width", value=INPUT_HW[1])])
    tester = rclpy.create_node("rig_driver", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(tester)
    try:
        grids: list[SemanticVoxelGrid] = []
        tester.create_subscription(SemanticVoxelGrid, "/gsdocc/occupancy", grids.append, 10)
        image_pubs = {c: tester.create_publisher(Image, f"/{c}/image_raw", RELIABLE) for c in RIG}
        info_pubs = {c: tester.create_publisher(CameraInfo, f"/{c}/camera_info", RELIABLE) for c in RIG}
        tester.create_publisher(TFMessage, "/tf_static", LATCHED).publish(TFMessage(transforms=[
            matrix_to_transform(np.asarray(sample.cameras[source]["sensor2ego"]), "base_link",
                                f"{camera}_optical_frame", 0) for camera, source in RIG.items()]))
        tf_pub = tester.create_publisher(TFMessage, "/tf", 100)
        assert spin_until(executor, lambda: all(p.get_subscription_count() for p in image_pubs.values()), 10.0)
        assert node.params.cameras == tuple(RIG) and node.params.image_fit == "intrinsics"
        tf_pub.publish(TFMessage(transforms=[
            matrix_to_transform(np.asarray(sample.cameras[source]["ego2global"]), "odom", "base_link",
                                by_name[source].stamp_ns + offset) for source in RIG.values()]))
        for camera in RIG:
            info_pubs[camera].publish(infos[camera])
            image_pubs[camera].publish(messages[camera])
        assert spin_until(executor, lambda: len(grids) > 0, 180.0), f"no grid: {dict(node.counters)}"
    finally:
        executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
        tester.destroy_node()
    grid = grid_from_message(grids[0])
    assert grids[0].header.stamp == messages["front_camera"].header.stamp and "degraded" not in grids[0].source
    agreement = float((grid.labels == expected.labels).mean())
    assert agreement > 0.999, f"node and offline runner agree on only {agreement:.4%} of the voxels"
    assert np.array_equal(grid.camera_mask, expected.camera_mask)
    assert not grid.camera_mask[50, 100, 5]  # 20 m behind: no rear camera on this rig
