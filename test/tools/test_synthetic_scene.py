"""The synthetic street bag of `gsdocc demo`: contents, stamps, and images that agree with the bag's calibration."""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA, load_sample_frames
from gsdocc_ros.pipeline.geometry import invert_transform, make_transform, quaternion_to_matrix
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_GEOMETRY
from gsdocc_ros.io.bags import bag_typestore, open_bag
from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.grid_files import read_grid_file
from gsdocc_ros.io.synthetic_scene import RIG, START_NS, StreetScene, write_synthetic_bag

KEYFRAMES = 2
LABEL = {name: index for index, name in enumerate(CLASS_NAMES)}


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory):
    """A two-keyframe synthetic bag (quarter-resolution ray casting, for speed) and its ground truth."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_bag(root / "bag", keyframes=KEYFRAMES, truth_dir=root / "truth", scale=0.25,
                               progress=False)


@pytest.fixture(scope="module")
def messages(bag) -> list[tuple[str, int, object]]:
    """(topic, bag time, deserialised message) of the whole bag, in the reader's order."""
    store = bag_typestore()
    reader = open_bag(bag.path)
    try:
        return [(c.topic, t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]
    finally:
        reader.close()


def _stamp(msg: object) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def _matrix(transform: object) -> np.ndarray:
    t, q = transform.transform.translation, transform.transform.rotation
    return make_transform(quaternion_to_matrix([q.x, q.y, q.z, q.w]), [t.x, t.y, t.z])


def test_topics_counts_and_types(bag, messages) -> None:
    counts = Counter(topic for topic, _, _ in messages)
    expected = {"/tf_static": 1, "/tf": 6 * KEYFRAMES, "/gsdocc/scene": 1, "/gsdocc/sample_token": KEYFRAMES}
    for name in CAMERA_NAMES:
        expected[f"/{name}/image_rect_compressed"] = KEYFRAMES
        expected[f"/{name}/camera_info"] = KEYFRAMES
    assert dict(counts) == expected
    assert bag.counts == counts
    assert [k.token for k in bag.keyframes] == [f"synthetic-street-{i:03d}" for i in range(KEYFRAMES)]
    types = {topic: type(msg).__name__ for topic, _, msg in messages}
    assert types["/CAM_FRONT/image_rect_compressed"] == "sensor_msgs__msg__CompressedImage"
    assert types["/CAM_BACK/camera_info"] == "sensor_msgs__msg__CameraInfo"
    assert types["/tf"] == types["/tf_static"] == "tf2_msgs__msg__TFMessage"


def test_stamps_staggered_and_tf_first(bag, messages) -> None:
    """Bag time = header stamp; cameras fire 7-49 ms after each 0.5 s set stamp; /tf at a stamp precedes its image."""
    times = [t for _, t, _ in messages]
    assert times == sorted(times)
    tf_seen: set[int] = set()
    image_stamps: dict[str, list[int]] = defaultdict(list)
    for topic, t, msg in messages:
        if topic == "/tf":
            (transform,) = msg.transforms
            assert (transform.header.frame_id, transform.child_frame_id) == ("map", "base_link")
            tf_seen.add(_stamp(transform))
        elif topic.endswith("/image_rect_compressed"):
            assert _stamp(msg) == t
            assert t in tf_seen, f"{topic} at {t} came before the ego pose at its stamp"
            image_stamps[msg.header.frame_id].append(t)
    for name in CAMERA_NAMES:
        offsets = [(t - START_NS) % 500_000_000 for t in image_stamps[name]]
        assert len(set(offsets)) == 1 and 7e6 <= offsets[0] <= 49e6, name
    tokens = [(t, msg.data) for topic, t, msg in messages if topic == "/gsdocc/sample_token"]
    assert [t for t, _ in tokens] == image_stamps[KEY_CAMERA] == [k.stamp_ns for k in bag.keyframes]


def test_jpeg_1600x900_and_camera_info(messages) -> None:
    for topic, _, msg in messages:
        if topic.endswith("/image_rect_compressed"):
            assert msg.format == "jpeg"
            image = Image.open(io.BytesIO(msg.data.tobytes()))
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (1600, 900))
        elif topic.endswith("/camera_info"):
            mount = RIG[msg.header.frame_id]
            assert (msg.width, msg.height) == (1600, 900)
            np.testing.assert_allclose(msg.k.reshape(3, 3), mount.intrinsics())


def test_rig_is_nuscenes_like(shared_data: Path) -> None:
    """Our round-number rig is within a few degrees, centimetres and percent of the real scene-0061 calibration."""
    real = load_sample_frames(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c", load_images=False).cameras
    for name in CAMERA_NAMES:
        ours, theirs = RIG[name].cam_to_ego(), np.asarray(real[name]["sensor2ego"])
        assert np.linalg.norm(ours[:3, 3] - theirs[:3, 3]) < 0.15, name
        cosine = np.clip(ours[:3, 2] @ theirs[:3, 2], -1, 1)  # optical axes
        assert math.degrees(math.acos(cosine)) < 4.0, name
        focal = np.asarray(real[name]["intrinsics"])[0, 0]
        assert abs(RIG[name].focal_px / focal - 1) < 0.02, name


def _seen(messages, camera: str, stamp_ns: int, world_point: np.ndarray) -> np.ndarray | None:
    """Mean colour of the 5x5 pixels around a world point in ``camera``'s image at ``stamp_ns`` (None: not in view).

    The pixel comes from the bag's tf and CameraInfo only, never from the renderer.
    """
    static = next(m for topic, _, m in messages if topic == "/tf_static")
    cam_to_ego = _matrix(next(t for t in static.transforms if t.child_frame_id == camera))
    ego_to_world = _matrix(next(m.transforms[0] for topic, t, m in messages if topic == "/tf" and t == stamp_ns))
    info = next(m for topic, t, m in messages if topic == f"/{camera}/camera_info" and t == stamp_ns)
    p = invert_transform(ego_to_world @ cam_to_ego) @ np.append(world_point, 1.0)
    uv = info.k.reshape(3, 3) @ p[:3]
    if p[2] < 1.0:
        return None
    u, v = int(round(uv[0] / uv[2])), int(round(uv[1] / uv[2]))
    if not (3 <= u < info.width - 3 and 3 <= v < info.height - 3):
        return None
    image = next(m for topic, t, m in messages if topic == f"/{camera}/image_rect_compressed" and t == stamp_ns)
    pixels = np.asarray(Image.open(io.BytesIO(image.data.tobytes())).convert("RGB"), dtype=int)
    return pixels[v - 2:v + 3, u - 2:u + 3].reshape(-1, 3).mean(axis=0)


def _red(rgb: np.ndarray) -> bool:
    return bool(rgb[0] > rgb[1] + 60 and rgb[0] > rgb[2] + 60)


def _blue(rgb: np.ndarray) -> bool:
    return bool(rgb[2] > rgb[0] + 60)


def _yellow(rgb: np.ndarray) -> bool:
    return bool(rgb[0] > 150 and rgb[1] > 110 and rgb[2] < rgb[1] - 50)


@pytest.mark.parametrize("keyframe", range(KEYFRAMES))
def test_scene_points_land_on_their_colours(messages, keyframe: int) -> None:
    """Points just inside and just outside the edges of cars, and a lane marking, project (with the bag's tf and
    CameraInfo only) onto their own colours and off them: a pose off by 0.3 m or 1 degree fails this test."""
    scene = StreetScene()

    def colour(s: float, l: float, z: float, car: int | None = None) -> np.ndarray:
        """Colour of street point (s, l, z) in the first camera of the set that sees it; s relative to a car."""
        for camera in CAMERA_NAMES:
            stamp = [t for topic, t, _ in messages if topic == f"/{camera}/image_rect_compressed"][keyframe]
            t_s = (stamp - START_NS) / 1e9
            s_world = s + (0.0 if car is None else scene.cars[car].s0 + scene.cars[car].speed * t_s)
            x, y, _ = scene.layout.place(s_world, l)
            rgb = _seen(messages, camera, stamp, np.array([x, y, z]))
            if rgb is not None:
                return rgb
        raise AssertionError(f"no camera sees street point {(s, l, z)} (car {car})")

    lane = scene.ego_lane  # the red car (0) drives ahead in the ego's lane: its rear face is 2.25 m behind its centre
    for dl, z in ((0.0, 0.35), (0.0, 0.95), (-0.75, 0.65), (0.75, 0.65)):
        assert _red(colour(-2.25, lane + dl, z, car=0)), ("inside the red car's rear", dl, z)
    for dl, z in ((0.0, 0.05), (-1.25, 0.65), (1.25, 0.65), (0.0, 2.6)):
        assert not _red(colour(-2.25, lane + dl, z, car=0)), ("outside the red car's rear", dl, z)
    side = scene.cars[1].l + 0.95  # the blue parked car's side facing the road, 4.5 m long, 3 to 6 m away
    for ds in (-1.2, 0.0, 2.0):
        assert _blue(colour(ds, side, 0.9, car=1)), ("on the blue car's side", ds)
    for ds, z in ((2.5, 0.9), (0.0, 1.9)):  # past its front end, above it: the line of sight misses the car
        assert not _blue(colour(ds, side, z, car=1)), ("off the blue car", ds, z)
    assert _yellow(colour(12.0, 0.12, 0.0)), "double yellow centre line"
    assert _yellow(colour(2.25, lane, 0.65, car=3)), "front of the yellow car following the ego"


def test_ground_truth_occupancy(bag) -> None:
    """The truth grid has road under the ego, the car ahead where it drives, sidewalk beside the road, free above."""
    assert [p.name for p in bag.truth] == [f"{k.token}.npz" for k in bag.keyframes]
    labels = read_grid_file(bag.truth[0]).labels
    geometry = OCC3D_GEOMETRY

    def at(x: float, y: float, z: float) -> int:
        index = np.floor((np.array([x, y, z]) - geometry.origin) / geometry.voxel_size).astype(int)
        return int(labels[tuple(index)])

    assert at(0.0, 0.0, 0.0) == LABEL["driveable_surface"]
    assert at(0.0, 0.0, 1.0) == FREE_INDEX
    scene = StreetScene()
    assert at(scene.cars[0].s0 - 0.1, 0.0, 0.8) == LABEL["car"]  # 14 m ahead, same lane, same speed
    assert at(0.0, -8.0 + 1.75, 0.0) == LABEL["sidewalk"]  # l = -8 m (the ego drives at l = -1.75 m)
    assert at(0.0, 8.0 + 1.75, 0.0) == LABEL["sidewalk"]
    assert at(0.0, 12.5 + 1.75, 0.0) == LABEL["terrain"]
    counts = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES))
    for name in ("car", "driveable_surface", "sidewalk", "terrain", "manmade", "vegetation"):
        assert counts[LABEL[name]] > 0, name


def test_refuses_existing_bag(bag) -> None:
    with pytest.raises(ToolError, match="exists"):
        write_synthetic_bag(bag.path, keyframes=1, scale=0.1, progress=False)
