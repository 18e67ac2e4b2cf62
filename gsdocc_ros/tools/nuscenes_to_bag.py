"""Convert nuScenes scenes into a ROS 2 bag (mcap or sqlite3) that `gsdocc play` or `ros2 bag play` replays.

  gsdocc nuscenes-to-bag --dataroot DIR --version v1.0-mini --out BAG [--scenes scene-0061 ...]
                         [--all-sweeps] [--lidar] [--storage mcap|sqlite3] [--ros-distro humble|iron|jazzy|kilted]
                         [--force]

Every header stamp and every bag time is the dataset timestamp (microseconds -> nanoseconds); messages are
written in time order. Topics:

  /tf_static                    tf2_msgs/msg/TFMessage      base_link -> CAM_* and LIDAR_TOP from calibrated_sensor,
                                                            at the start (again at a later scene's start only if
                                                            its calibration differs, e.g. another vehicle)
  /tf                           tf2_msgs/msg/TFMessage      map -> base_link, the ego pose of every sample_data
                                                            written, before the image or scan it serves
  /CAM_*/image_rect_compressed  sensor_msgs/msg/CompressedImage  the original JPEG bytes (no re-encoding),
                                                            format "jpeg", frame_id CAM_*
  /CAM_*/camera_info            sensor_msgs/msg/CameraInfo  K, R = I, P = [K | 0], plumb_bob with D = 0 (nuScenes
                                                            images are already rectified), image size
  /LIDAR_TOP                    sensor_msgs/msg/PointCloud2 with --lidar: x, y, z, intensity, ring, all float32
                                                            (the .pcd.bin bytes unchanged), frame_id LIDAR_TOP
  /gsdocc/scene                 std_msgs/msg/String         scene name, at the scene's first stamp
  /gsdocc/sample_token          std_msgs/msg/String         sample token of each keyframe (see below)

Sample tokens: each keyframe's token is written on /gsdocc/sample_token with the keyframe's CAM_FRONT image
stamp as bag time, just before that image. A keyframe's token is therefore recovered from the bag by the
CAM_FRONT stamp: `gsdocc record --bag BAG` names each grid (stamped with its CAM_FRONT stamp) by the token
written at that bag time. Keyframes only (2 Hz) by default; --all-sweeps adds every 12 Hz camera
sweep (and the 20 Hz LiDAR sweeps with --lidar). Offered QoS recorded in the bag: reliable and volatile, with
/tf_static reliable and transient-local (latched), so a replay reaches reliable and best-effort subscribers.
The bag is built under a hidden name beside BAG and renamed when complete; an existing BAG needs --force.

Bag format: --ros-distro writes what that distribution's rosbag2 writes: metadata.yaml version (humble 5, iron 7,
jazzy and kilted 9) with only the fields of that version (custom_data from iron, type_description_hash from iron,
ros_distro from jazzy), offered_qos_profiles as a YAML string (humble, iron) or a YAML list (jazzy, kilted), the
storage file BAG/<name>_0.mcap or _0.db3, and the message definitions of that distribution. The default, humble,
is the format every supported distribution plays; a jazzy or kilted bag does not play on humble or iron.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gsdocc_ros.io.bag_messages import LIDAR_TOPIC, STORAGES
from gsdocc_ros.io.bags import DEFAULT_DISTRO, DISTROS

VERB = "nuscenes-to-bag"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``gsdocc nuscenes-to-bag``."""
    parser = subparsers.add_parser(VERB, help="convert nuScenes scenes to a ROS 2 bag (JPEG images, tf, tokens)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes root (holds samples/ and VERSION/)")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="bag directory to create")
    parser.add_argument("--scenes", nargs="+", help="scene names to convert (default: every scene of the version)")
    parser.add_argument("--all-sweeps", action="store_true", help="write every 12 Hz camera sweep, not only keyframes")
    parser.add_argument("--lidar", action="store_true", help=f"also write {LIDAR_TOPIC} as sensor_msgs/PointCloud2")
    parser.add_argument("--storage", choices=tuple(STORAGES), default="mcap", help="bag storage (default: %(default)s)")
    parser.add_argument("--ros-distro", choices=tuple(DISTROS), default=DEFAULT_DISTRO.name,
                        help="write the bag format and message definitions of this distribution's rosbag2 (default: "
                             "%(default)s, the format every supported distribution plays)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing bag at --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``gsdocc nuscenes-to-bag``; returns 0, or raises ToolError (exit 2) naming what is wrong."""
    from gsdocc_ros.io.nuscenes import convert

    result = convert(args.dataroot, args.version, args.out, args.scenes, args.all_sweeps, args.lidar, args.storage,
                     args.force, ros_distro=args.ros_distro)
    for topic in sorted(result.counts):
        print(f"  {topic}: {result.counts[topic]}")
    print(f"wrote {sum(result.counts.values())} messages on {len(result.counts)} topics ({len(result.scenes)} "
          f"scenes, {result.keyframes} keyframes) to {args.out}")
    return 0
