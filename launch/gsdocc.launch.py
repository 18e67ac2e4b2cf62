"""Start the GSD-OCC occupancy node (and optionally RViz) on a full ROS 2 install.

    ros2 launch gsdocc_ros gsdocc.launch.py checkpoint:=/path/gsdocc.pth device:=cuda rviz:=true
    ros2 launch gsdocc_ros gsdocc.launch.py use_sim_time:=true   # while replaying a bag
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("gsdocc_ros")
    arguments = [
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "gsdocc.yaml"]),
                              description="Parameter file of the node (every parameter documented there)"),
        DeclareLaunchArgument("checkpoint", default_value="", description="GSD-OCC checkpoint path"),
        DeclareLaunchArgument("allow_random_weights", default_value="false",
                              description="Run without a checkpoint on random weights (demo only)"),
        DeclareLaunchArgument("device", default_value="cuda", description="cpu, cuda or cuda:N"),
        DeclareLaunchArgument("precision", default_value="fp32", description="fp32, fp16 or bf16"),
        DeclareLaunchArgument("cadence", default_value="keyframe", description="keyframe or every_frame"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Follow /clock (set true while replaying a bag)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its outputs"),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/gsdocc.rviz"),
    ]
    node = Node(
        package="gsdocc_ros",
        executable="gsdocc_node",
        name="gsdocc",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {
                "checkpoint": LaunchConfiguration("checkpoint"),
                "allow_random_weights": LaunchConfiguration("allow_random_weights"),
                "device": LaunchConfiguration("device"),
                "precision": LaunchConfiguration("precision"),
                "cadence": LaunchConfiguration("cadence"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
            },
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "gsdocc.rviz"])],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, node, rviz])
