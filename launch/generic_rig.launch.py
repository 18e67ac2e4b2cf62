"""Start the occupancy node on a rig that is not nuScenes: gsdocc.launch.py with config/generic_rig.yaml.

    ros2 launch gsdocc_ros generic_rig.launch.py checkpoint:=/path/gsdocc.pth device:=cuda rviz:=true
    ros2 launch gsdocc_ros generic_rig.launch.py rig_config:=/path/my_rig.yaml

Copy config/generic_rig.yaml, set your camera names, topics, frames and QoS, and pass it as rig_config; the
parameters it does not set keep their defaults (config/gsdocc.yaml). Every argument of gsdocc.launch.py applies.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("gsdocc_ros")
    rig_config = DeclareLaunchArgument(
        "rig_config", default_value=PathJoinSubstitution([share, "config", "generic_rig.yaml"]),
        description="Parameter file of the rig (cameras, topics, frames, image fit, QoS)")
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "gsdocc.launch.py"])),
        launch_arguments={"config": LaunchConfiguration("rig_config")}.items())
    return LaunchDescription([rig_config, node])
