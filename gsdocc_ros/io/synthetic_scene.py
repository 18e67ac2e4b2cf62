"""A synthetic street seen through nuScenes-like surround cameras, written as a ROS 2 bag: the input of `gsdocc demo`.

Needs no dataset. A gently curving four-lane street (asphalt, lane markings, a zebra crossing, kerbs, raised
sidewalks, grass), cars (some driving, some parked), building facades with windows, street lights and trees is
ray cast with numpy through six pinhole cameras mounted like the nuScenes rig (`RIG`: round numbers of our own,
not the dataset's calibration), while the ego drives along the curve at 5 m/s. Each camera is rendered from the
ego pose at its own exposure time, 7 to 49 ms after the set stamp, as the nuScenes cameras fire one after another.

The bag has the topics, types, QoS and write order of `gsdocc nuscenes-to-bag` with keyframes only (2 Hz):
/tf_static (base_link -> CAM_*), /tf (map -> base_link at every image stamp, before the image),
/CAM_*/camera_info, /CAM_*/image_rect_compressed (JPEG, 1600x900), /gsdocc/scene and /gsdocc/sample_token.
The ground-truth occupancy of each keyframe (Occ3D layout and classes, ego frame at the CAM_FRONT stamp) can be
written beside it as <sample token>.npz, the layout `gsdocc render` and `gsdocc eval` read.

Frames: world ("map") x east, y north, z up, road surface at z = 0; ego (base_link) x forward, y left, z up, on
the ground; cameras OpenCV (x right, y down, z forward). Street coordinates (s, l): arc length along the road's
centre line and lateral offset from it, left positive.

Why this file is long: the scene (street layout, cars, boxes), its cameras and the bag written from it are
one model of one street; the labelled ground truth must come from the same geometry the images are drawn from.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rosbags.rosbag2 import StoragePlugin
from tqdm import tqdm

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA
from gsdocc_ros.pipeline.geometry import invert_transform, make_transform, matrix_to_quaternion
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX, OCC3D_GEOMETRY, GridGeometry
from gsdocc_ros.io.bag_messages import (EGO_FRAME, MAP_FRAME, SAMPLE_TOKEN_TOPIC, SCENE_TOPIC, TF_STATIC_TOPIC,
                                        TF_TOPIC, Event, MessageFactory, Rank, camera_info_topic, image_topic,
                                        write_bag, write_order)
from gsdocc_ros.io.output import atomic_directory
from gsdocc_ros.io.grid_files import write_grid_file

SCENE_NAME = "synthetic-street"
START_NS = 1_700_000_000 * 10**9
"""Stamp of the first camera set (fixed, so that two runs write the same bag)."""
KEYFRAME_PERIOD_NS = 500_000_000
"""2 Hz: the history step the model was trained with."""
LABEL = {name: index for index, name in enumerate(CLASS_NAMES)}


@dataclass(frozen=True)
class CameraMount:
    """One camera of the rig: where it sits on the ego, where it looks, how it images, when it fires."""

    position: tuple[float, float, float]
    """Optical centre in the ego frame (m)."""
    yaw_deg: float
    """Heading of the optical axis in the ego frame (degrees, left positive); the axis is level."""
    focal_px: float
    """Focal length in pixels (square pixels)."""
    delay_ms: int
    """Exposure time after the set stamp (ms)."""
    width: int = 1600
    height: int = 900

    def intrinsics(self) -> np.ndarray:
        """float64 (3, 3) pinhole matrix K, principal point at the image centre."""
        return np.array([[self.focal_px, 0.0, self.width / 2], [0.0, self.focal_px, self.height / 2],
                         [0.0, 0.0, 1.0]])

    def cam_to_ego(self) -> np.ndarray:
        """float64 (4, 4) camera (OpenCV axes) -> ego transform."""
        yaw = math.radians(self.yaw_deg)
        forward = [math.cos(yaw), math.sin(yaw), 0.0]
        right = [math.sin(yaw), -math.cos(yaw), 0.0]
        rotation = np.array([right, [0.0, 0.0, -1.0], forward]).T  # columns: camera x, y, z in the ego frame
        return make_transform(rotation, self.position)


RIG: dict[str, CameraMount] = {
    "CAM_FRONT_LEFT": CameraMount((1.50, 0.50, 1.50), 55.0, 1266.0, 7),
    "CAM_FRONT": CameraMount((1.70, 0.00, 1.50), 0.0, 1266.0, 15),
    "CAM_FRONT_RIGHT": CameraMount((1.55, -0.50, 1.50), -55.0, 1266.0, 23),
    "CAM_BACK_RIGHT": CameraMount((1.00, -0.50, 1.55), -110.0, 1266.0, 31),
    "CAM_BACK": CameraMount((0.00, 0.00, 1.55), 180.0, 800.0, 40),
    "CAM_BACK_LEFT": CameraMount((1.00, 0.50, 1.55), 110.0, 1266.0, 49),
}
"""A nuScenes-like rig in round numbers: five 1266 px cameras (~64 degrees wide) and a wider rear one, fired in turn."""


@dataclass(frozen=True)
class StreetLayout:
    """Cross-section and curvature of the street."""

    radius_m: float = 150.0
    """Radius of the centre line; the street bends left."""
    lane_m: float = 3.5
    """Lane width; two lanes each way."""
    kerb_m: float = 7.0
    """|l| of the kerb: the road is |l| < kerb_m."""
    sidewalk_m: float = 11.0
    """|l| where the sidewalk ends and grass begins."""
    kerb_height_m: float = 0.15
    """Height of sidewalk and grass above the road."""
    zebra_s: tuple[float, float] = (30.0, 34.0)
    """Arc-length interval of the zebra crossing."""

    def street_coords(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Street coordinates (s, l) of world points (x, y); the centre line starts at the origin heading east."""
        r = np.hypot(x, y - self.radius_m)
        return self.radius_m * np.arctan2(x, self.radius_m - y), self.radius_m - r

    def place(self, s: float, l: float) -> tuple[float, float, float]:
        """World (x, y) of street coordinates (s, l) and the road's heading there (rad)."""
        theta = s / self.radius_m
        radius = self.radius_m - l
        return radius * math.sin(theta), self.radius_m - radius * math.cos(theta), theta

    def surface_label(self, l: np.ndarray) -> np.ndarray:
        """Occ3D class of the ground at lateral offsets ``l``: driveable_surface, sidewalk or terrain."""
        a = np.abs(l)
        return np.where(a < self.kerb_m, LABEL["driveable_surface"],
                        np.where(a < self.sidewalk_m, LABEL["sidewalk"], LABEL["terrain"])).astype(np.uint8)

    def surface_height(self, l: np.ndarray) -> np.ndarray:
        """World z of the ground at lateral offsets ``l``: 0 on the road, kerb height beyond the kerbs."""
        return np.where(np.abs(l) < self.kerb_m, 0.0, self.kerb_height_m)


@dataclass(frozen=True)
class Box:
    """An upright box of the scene: centre (world m), size (length along the heading, width, height), look, class."""

    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    heading: float
    """Rotation about z (rad) of the box's length axis from world x."""
    colour: tuple[int, int, int]
    label: int
    """Occ3D class index."""
    windows: bool = False
    """Draw rows of windows on the vertical faces (buildings)."""

    def corners(self) -> np.ndarray:
        """float64 (8, 3) world positions of the box's corners."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        local = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)]) * np.asarray(self.size) / 2
        return local @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) + np.asarray(self.centre)


@dataclass(frozen=True)
class Car:
    """A car driving (or parked) along a lane at constant speed; speed < 0 drives against increasing s."""

    s0: float
    """Arc length of the car's centre at t = 0."""
    l: float
    speed: float
    colour: tuple[int, int, int]

    def boxes(self, layout: StreetLayout, t_s: float) -> list[Box]:
        """Body and glazed cabin at time ``t_s``."""
        x, y, heading = layout.place(self.s0 + self.speed * t_s, self.l)
        heading += math.pi if self.speed < 0 else 0.0
        car = LABEL["car"]
        return [Box((x, y, 0.65), (4.5, 1.9, 0.8), heading, self.colour, car),
                Box((x - 0.3 * math.cos(heading), y - 0.3 * math.sin(heading), 1.3), (2.4, 1.7, 0.5), heading,
                    (45, 55, 65), car)]


GROUND_PALETTE = np.array([(68, 68, 72), (232, 232, 226), (225, 185, 40), (172, 167, 157), (128, 124, 118),
                           (80, 125, 52), (150, 150, 145)], dtype=np.float64)
"""Ground colours: asphalt, white marking, yellow centre line, paving, paving joint, grass, kerb face."""
GROUND_GRAIN = np.array([14.0, 0.0, 0.0, 6.0, 0.0, 30.0, 0.0])
"""Amplitude of the texture noise per ground colour."""
FACADE_COLOURS = ((205, 190, 165), (180, 110, 90), (200, 200, 195))
"""Sandstone, brick and concrete."""
GLASS = np.array([55.0, 75.0, 95.0])
SKY_ZENITH = np.array([95.0, 145.0, 215.0])
SKY_HORIZON = np.array([205.0, 218.0, 232.0])
SUN = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
MAX_RANGE_M = 150.0
"""Boxes farther than this from a camera are not drawn (they are lost in the haze)."""


def _noise(a: np.ndarray, b: np.ndarray, cell: float) -> np.ndarray:
    """A fixed pseudo-random value in [0, 1) per (a, b) cell of ``cell`` metres: texture without stored state."""
    return np.modf(np.abs(np.sin(np.floor(a / cell) * 12.9898 + np.floor(b / cell) * 78.233)) * 43758.5453)[0]


class StreetScene:
    """The street, its objects over time, the ego's drive, and ray-cast camera images and occupancy of it."""

    def __init__(self, layout: StreetLayout = StreetLayout(), ego_speed: float = 5.0, ego_lane: float = -1.75,
                 seed: int = 0) -> None:
        self.layout = layout
        self.ego_speed = ego_speed
        """Ego speed along its lane (m/s)."""
        self.ego_lane = ego_lane
        """Ego's lateral offset l (m): the inner lane on the right."""
        self.static_boxes = self._build_static(np.random.default_rng(seed))
        self.cars = [
            Car(14.0, ego_lane, ego_speed, (200, 30, 30)),  # ahead in the ego's lane, same speed
            Car(6.0, -5.25, 0.0, (30, 80, 200)),  # parked in the outer lane, overtaken
            Car(22.0, -5.25, 0.0, (220, 220, 215)),
            Car(-9.0, ego_lane, ego_speed, (235, 190, 30)),  # following the ego
            Car(26.0, 1.75, -6.0, (120, 120, 125)),  # oncoming
            Car(52.0, 5.25, -4.0, (30, 140, 70)),
            Car(-20.0, 1.75, -6.0, (140, 40, 160)),
        ]

    def _build_static(self, rng: np.random.Generator) -> list[Box]:
        """Buildings, street lights and trees along both sides of s in [-80, 120] m."""
        lay, boxes = self.layout, []
        manmade, vegetation = LABEL["manmade"], LABEL["vegetation"]
        for side in (1.0, -1.0):
            s = -80.0 + rng.uniform(0, 6)
            while s < 120.0:  # facades: varied length, depth and height, with gaps
                length, depth, height = rng.uniform(9, 18), rng.uniform(7, 12), rng.uniform(6, 16)
                front = lay.sidewalk_m + rng.uniform(2.0, 4.0)
                x, y, heading = lay.place(s + length / 2, side * (front + depth / 2))
                tone, paint = rng.uniform(0.75, 1.0), FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))]
                colour = tuple(int(c * tone) for c in paint)
                boxes.append(Box((x, y, height / 2), (length, depth, height), heading, colour, manmade, True))
                s += length + rng.uniform(2, 7)
            for s in np.arange(-70.0, 120.0, 24.0) + (0.0 if side > 0 else 12.0):  # street lights
                x, y, heading = lay.place(s, side * (lay.kerb_m + 0.6))
                boxes.append(Box((x, y, 3.5), (0.2, 0.2, 7.0), heading, (90, 95, 100), manmade))
                x, y, _ = lay.place(s, side * (lay.kerb_m - 0.4))
                boxes.append(Box((x, y, 6.95), (0.25, 2.0, 0.12), heading, (90, 95, 100), manmade))
            for s in np.arange(-75.0, 120.0, 14.0) + (5.0 if side > 0 else 0.0):  # trees
                x, y, heading = lay.place(s, side * (lay.sidewalk_m - 1.2))
                boxes.append(Box((x, y, 1.3), (0.35, 0.35, 2.6), heading, (95, 70, 45), vegetation))
                crown = rng.uniform(2.2, 3.2)
                boxes.append(Box((x, y, 2.3 + crown / 2), (crown, crown, crown), heading + rng.uniform(0, 1.5),
                                 (60, 120, 45), vegetation))
        return boxes

    def boxes_at(self, t_s: float) -> list[Box]:
        """Every box of the scene at time ``t_s`` (seconds after the first set)."""
        return self.static_boxes + [box for car in self.cars for box in car.boxes(self.layout, t_s)]

    def ego_pose(self, t_s: float) -> np.ndarray:
        """float64 (4, 4) ego -> world at ``t_s``: on the ego lane, heading along the road, on the ground."""
        x, y, heading = self.layout.place(self.ego_speed * t_s, self.ego_lane)
        c, s = math.cos(heading), math.sin(heading)
        return make_transform([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], [x, y, 0.0])

    def render(self, cam_to_world: np.ndarray, intrinsics: np.ndarray, size_hw: tuple[int, int], t_s: float,
               scale: float = 0.5) -> np.ndarray:
        """uint8 (H, W, 3) RGB image of the scene at ``t_s`` through a pinhole camera.

        Rays are cast for a (H*scale, W*scale) grid of pixel centres of the full-size image, then the picture is
        resized to (H, W) bilinearly (pixel centres map onto each other, so K holds for the full-size image).
        """
        height, width = size_hw
        low_h, low_w = round(height * scale), round(width * scale)
        step_v, step_u = height / low_h, width / low_w
        u = (np.arange(low_w) + 0.5) * step_u - 0.5
        v = (np.arange(low_h) + 0.5) * step_v - 0.5
        pixels = np.stack(np.meshgrid(u, v) + [np.ones((low_h, low_w))], axis=-1)  # (h, w, 3)
        rotation, origin = cam_to_world[:3, :3], cam_to_world[:3, 3]
        dirs = pixels @ (rotation @ np.linalg.inv(intrinsics)).T  # (h, w, 3) world ray directions
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)

        depth, colour, normal = self._cast_ground(origin, dirs)
        for box in self.boxes_at(t_s):
            self._cast_box(box, origin, dirs, rotation, intrinsics, (step_u, step_v), depth, colour, normal)

        shade = 0.6 + 0.4 * np.clip(normal @ SUN, 0.0, 1.0)  # (h, w) Lambert with ambient light
        haze = 1.0 - np.exp(-np.nan_to_num(depth, posinf=1e9) / 180.0)
        sky = SKY_HORIZON + np.clip(dirs[..., 2:] * 2.5, 0.0, 1.0) * (SKY_ZENITH - SKY_HORIZON)  # (h, w, 3)
        lit = colour * shade[..., None] * (1 - haze[..., None]) + SKY_HORIZON * haze[..., None]
        image = np.where(np.isfinite(depth)[..., None], lit, sky)
        low = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        return np.asarray(low.resize((width, height), Image.BILINEAR))

    def _cast_ground(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Depth (h, w), base colour (h, w, 3) and normal (h, w, 3) of the ground hit by each ray (inf: none)."""
        lay = self.layout
        depth = np.full(dirs.shape[:2], np.inf)
        colour = np.zeros(dirs.shape)
        normal = np.zeros(dirs.shape)
        down = dirs[..., 2] < -1e-6
        d = dirs[down]  # (m, 3) the rays that reach the ground
        t_top = (lay.kerb_height_m - origin[2]) / d[:, 2]  # hit of the sidewalk/grass level
        s_top, l_top = lay.street_coords(origin[0] + t_top * d[:, 0], origin[1] + t_top * d[:, 1])
        offroad = np.abs(l_top) >= lay.kerb_m
        t_road = -origin[2] / d[:, 2]  # hit of the road level
        s_road, l_road = lay.street_coords(origin[0] + t_road * d[:, 0], origin[1] + t_road * d[:, 1])
        kerb = ~offroad & (np.abs(l_road) >= lay.kerb_m)  # passed under the sidewalk edge: its kerb face
        s, l = np.where(offroad, s_top, s_road), np.where(offroad, l_top, l_road)
        a = np.abs(l)
        white = ((np.abs(a - lay.lane_m) < 0.075) & (np.mod(s, 9.0) < 3.0)) | (np.abs(a - (lay.kerb_m - 0.3)) < 0.1)
        white |= (s > lay.zebra_s[0]) & (s < lay.zebra_s[1]) & (np.mod(l, 1.0) < 0.5) & (a < lay.kerb_m - 0.6)
        joint = (np.mod(s, 1.2) < 0.05) | (np.mod(l, 1.2) < 0.05)
        code = np.select([kerb, offroad & (a >= lay.sidewalk_m), offroad & joint, offroad, np.abs(a - 0.12) < 0.06,
                          white], [6, 5, 4, 3, 2, 1], 0)  # index into GROUND_PALETTE
        grain = _noise(s, l, 0.3) - 0.5
        depth[down] = np.where(offroad, t_top, t_road)
        colour[down] = GROUND_PALETTE[code] + grain[:, None] * GROUND_GRAIN[code][:, None]
        normal[down] = np.where(kerb[:, None], (0.0, 0.0, 0.3), (0.0, 0.0, 1.0))  # kerb faces turn from the sun
        return depth, colour, normal

    @staticmethod
    def _cast_box(box: Box, origin: np.ndarray, dirs: np.ndarray, rotation: np.ndarray, intrinsics: np.ndarray,
                  pixel_step: tuple[float, float], depth: np.ndarray, colour: np.ndarray, normal: np.ndarray) -> None:
        """Intersect the rays with ``box`` (slab test) and keep the nearer hits in depth, colour and normal in place.

        Only the rays inside the box's projected bounding rectangle are tested.
        """
        c, s = math.cos(box.heading), math.sin(box.heading)
        half = np.asarray(box.size) / 2
        cam = (box.corners() - origin) @ rotation  # (8, 3) camera frame
        if np.all(cam[:, 2] <= 0.05) or np.linalg.norm(np.asarray(box.centre) - origin) > MAX_RANGE_M + half.max():
            return
        rows, cols = slice(None), slice(None)
        if np.all(cam[:, 2] > 0.05):  # wholly in front: only the rays in its projected rectangle
            pix = cam @ intrinsics.T
            u, v = pix[:, 0] / pix[:, 2], pix[:, 1] / pix[:, 2]
            h, w = depth.shape
            c0, c1 = np.clip([math.floor((u.min() + 0.5) / pixel_step[0] - 0.5),
                              math.ceil((u.max() + 0.5) / pixel_step[0] + 0.5)], 0, w)
            r0, r1 = np.clip([math.floor((v.min() + 0.5) / pixel_step[1] - 0.5),
                              math.ceil((v.max() + 0.5) / pixel_step[1] + 0.5)], 0, h)
            if c0 >= c1 or r0 >= r1:
                return
            rows, cols = slice(r0, r1), slice(c0, c1)
        d = dirs[rows, cols]  # (h', w', 3) views of the rays and results inside the rectangle
        rel = origin - np.asarray(box.centre)
        o_box = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
        d_box = (c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2])  # 3 x (h', w')
        near, far = [], []
        with np.errstate(divide="ignore", invalid="ignore"):
            for o_a, d_a, h_a in zip(o_box, d_box, half):  # slab of each box axis
                t1, t2 = (-h_a - o_a) / d_a, (h_a - o_a) / d_a
                near.append(np.fmin(t1, t2))
                far.append(np.fmax(t1, t2))
        t_in = np.maximum(np.maximum(near[0], near[1]), near[2])
        t_out = np.minimum(np.minimum(far[0], far[1]), far[2])
        hit = (t_in <= t_out) & (t_in > 0) & (t_in < depth[rows, cols])
        if not hit.any():
            return
        t_hit = t_in[hit]
        axis = np.argmax(np.stack([n[hit] for n in near], axis=-1), axis=-1)  # face entered: 0 length, 1 width, 2 top
        d_hit = np.stack([a[hit] for a in d_box], axis=-1)  # (m, 3) box frame
        sign = -np.sign(d_hit[np.arange(len(axis)), axis])
        n_box = np.zeros((len(axis), 3))
        n_box[np.arange(len(axis)), axis] = sign
        n_world = np.stack([c * n_box[:, 0] - s * n_box[:, 1], s * n_box[:, 0] + c * n_box[:, 1], n_box[:, 2]], -1)
        base = np.broadcast_to(np.asarray(box.colour, dtype=np.float64), n_world.shape).copy()
        if box.windows:
            p_box = o_box + t_hit[:, None] * d_hit  # (m, 3) hit points in the box frame
            along = np.where(axis == 0, p_box[:, 1], p_box[:, 0])
            z = box.centre[2] + p_box[:, 2]
            face_half = half[1 - np.minimum(axis, 1)]  # half extent of the face along its horizontal
            glass = (axis < 2) & (z > 1.2) & (np.mod(along, 3.0) > 0.9) & (np.mod(along, 3.0) < 2.1) \
                & (np.mod(z, 3.2) > 1.0) & (np.mod(z, 3.2) < 2.4) & (np.abs(along) < face_half - 0.8)
            base[glass] = GLASS
        depth_view, colour_view, normal_view = depth[rows, cols], colour[rows, cols], normal[rows, cols]
        depth_view[hit] = t_hit
        colour_view[hit] = base
        normal_view[hit] = n_world

    def occupancy(self, ego2global: np.ndarray, t_s: float, geometry: GridGeometry = OCC3D_GEOMETRY) -> np.ndarray:
        """uint8 (X, Y, Z) Occ3D labels of the scene at ``t_s`` in the grid around the ego pose ``ego2global``.

        A voxel is a box's class when its centre lies in the box, the ground's class (driveable_surface,
        sidewalk, terrain) when the ground surface passes through it, free otherwise. The ego pose must be
        level (yaw only), as this scene's poses are.
        """
        size, vs = geometry.size, geometry.voxel_size
        labels = np.full(size, FREE_INDEX, dtype=np.uint8)
        ego_xy = geometry.centres(np.indices(size[:2] + (1,)).reshape(3, -1).T)[:, :2].astype(np.float64)  # (X*Y, 2)
        world_xy = ego_xy @ ego2global[:2, :2].T + ego2global[:2, 3]
        _, l = self.layout.street_coords(world_xy[:, 0], world_xy[:, 1])
        height = self.layout.surface_height(l) - ego2global[2, 3]  # ground z in the ego frame
        layer = np.floor((height - geometry.origin[2]) / vs).astype(int)  # (X*Y,) voxel layer holding the ground
        inside = (layer >= 0) & (layer < size[2])
        columns = np.flatnonzero(inside)
        labels.reshape(-1, size[2])[columns, layer[inside]] = self.layout.surface_label(l[inside])

        world_to_ego = invert_transform(ego2global)
        for box in self.boxes_at(t_s):
            self._fill_box(labels, box, world_to_ego, geometry)
        return labels

    @staticmethod
    def _fill_box(labels: np.ndarray, box: Box, world_to_ego: np.ndarray, geometry: GridGeometry) -> None:
        """Label the voxels of ``labels`` whose centres lie inside ``box`` (only the block it can reach is tested)."""
        c, s = math.cos(box.heading), math.sin(box.heading)
        half = np.asarray(box.size) / 2
        ego = box.corners() @ world_to_ego[:3, :3].T + world_to_ego[:3, 3]  # (8, 3) ego frame
        lo = np.floor((ego.min(axis=0) - geometry.origin) / geometry.voxel_size).astype(int)
        hi = np.ceil((ego.max(axis=0) - geometry.origin) / geometry.voxel_size).astype(int)
        lo, hi = np.clip(lo, 0, geometry.size), np.clip(hi, 0, geometry.size)
        if np.any(lo >= hi):
            return
        block = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)  # (x, y, z, 3)
        centres = geometry.centres(block.reshape(-1, 3)).astype(np.float64)  # (m, 3) ego frame
        ego_to_world = invert_transform(world_to_ego)
        rel = centres @ ego_to_world[:3, :3].T + ego_to_world[:3, 3] - np.asarray(box.centre)
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], -1)
        inside = np.all(np.abs(local) <= half, axis=1).reshape(block.shape[:3])
        labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = box.label


@dataclass(frozen=True)
class SyntheticKeyframe:
    """One camera set of the synthetic bag."""

    token: str
    """Its sample token, as written on /gsdocc/sample_token."""
    stamp_ns: int
    """The CAM_FRONT stamp (the stamp of the node's output grid for this set)."""
    ego2global: np.ndarray
    """float64 (4, 4) ego pose at the CAM_FRONT stamp."""


@dataclass
class SyntheticBag:
    """What `write_synthetic_bag` wrote."""

    path: Path
    counts: Counter
    """Messages per topic."""
    keyframes: list[SyntheticKeyframe]
    truth: list[Path] = field(default_factory=list)
    """Ground-truth grid files, one per keyframe (empty when not asked for)."""


def camera_stamp_ns(set_stamp_ns: int, camera: str) -> int:
    """Exposure stamp of ``camera`` in the set stamped ``set_stamp_ns``."""
    return set_stamp_ns + RIG[camera].delay_ms * 1_000_000


def transform_message(factory: MessageFactory, stamp_ns: int, parent: str, child: str, matrix: np.ndarray) -> object:
    """geometry_msgs/TransformStamped parent <- child of a float64 (4, 4) matrix."""
    x, y, z, w = matrix_to_quaternion(matrix[:3, :3])
    return factory.transform(stamp_ns, parent, child, matrix[:3, 3], (w, x, y, z))


def write_synthetic_bag(out: Path, keyframes: int = 4, truth_dir: Path | None = None,
                        scene: StreetScene | None = None, scale: float = 0.5, jpeg_quality: int = 90,
                        force: bool = False, progress: bool = True) -> SyntheticBag:
    """Render ``keyframes`` camera sets 0.5 s apart and write them as the mcap bag directory ``out``.

    ``truth_dir``: also write each keyframe's ground-truth occupancy there as <token>.npz. ``scale``: ray-cast
    resolution relative to 1600x900. An existing ``out`` is a ToolError unless ``force``.
    """
    if keyframes < 1:
        raise ValueError(f"keyframes: expected at least 1, got {keyframes}")
    scene = scene or StreetScene()
    factory = MessageFactory()
    events: list[Event] = []

    def add(stamp_ns: int, rank: Rank, topic: str, build) -> None:
        events.append(Event(stamp_ns, rank, len(events), topic, build))

    statics = [transform_message(factory, START_NS, EGO_FRAME, name, RIG[name].cam_to_ego()) for name in CAMERA_NAMES]
    add(START_NS, Rank.TF_STATIC, TF_STATIC_TOPIC, lambda: factory.tf_message(statics))
    add(START_NS, Rank.SCENE, SCENE_TOPIC, lambda: factory.string(SCENE_NAME))
    written: list[SyntheticKeyframe] = []
    truth: list[Path] = []
    if truth_dir is not None:
        truth_dir.mkdir(parents=True, exist_ok=True)
    for index in tqdm(range(keyframes), desc="rendering", unit="set", disable=not progress):
        set_ns = START_NS + index * KEYFRAME_PERIOD_NS
        for name in CAMERA_NAMES:
            mount, stamp = RIG[name], camera_stamp_ns(set_ns, name)
            t_s = (stamp - START_NS) / 1e9
            ego = scene.ego_pose(t_s)
            image = scene.render(ego @ mount.cam_to_ego(), mount.intrinsics(), (mount.height, mount.width), t_s, scale)
            jpeg = io.BytesIO()
            Image.fromarray(image).save(jpeg, format="JPEG", quality=jpeg_quality)
            tf = factory.tf_message([transform_message(factory, stamp, MAP_FRAME, EGO_FRAME, ego)])
            info = factory.pinhole_info(stamp, name, mount.intrinsics(), mount.height, mount.width)
            msg = factory.compressed_image(stamp, name, jpeg.getvalue(), "jpeg")
            add(stamp, Rank.TF, TF_TOPIC, lambda tf=tf: tf)
            add(stamp, Rank.CAMERA_INFO, camera_info_topic(name), lambda info=info: info)
            add(stamp, Rank.DATA, image_topic(name), lambda msg=msg: msg)
            if name == KEY_CAMERA:
                token = f"{SCENE_NAME}-{index:03d}"
                add(stamp, Rank.SAMPLE_TOKEN, SAMPLE_TOKEN_TOPIC, lambda token=token: factory.string(token))
                written.append(SyntheticKeyframe(token, stamp, ego))
                if truth_dir is not None:
                    truth.append(truth_dir / f"{token}.npz")
                    write_grid_file(truth[-1], scene.occupancy(ego, t_s))
    custom = {"gsdocc.source": "gsdocc synthetic street", "gsdocc.scenes": SCENE_NAME, "gsdocc.sweeps": "keyframes"}
    with atomic_directory(out, force) as staging:
        counts = write_bag(staging, write_order(events), StoragePlugin.MCAP, custom, progress=False)
    return SyntheticBag(path=out, counts=counts, keyframes=written, truth=truth)
