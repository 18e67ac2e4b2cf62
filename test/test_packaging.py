"""The package builds the ways users install it: pip (pure Python + `gsdocc`), colcon (package.xml + CMake)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_py_builds_a_wheel_with_the_gsdocc_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    wheel = next(tmp_path.glob("gsdocc_ros-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "gsdocc = gsdocc_ros.tools.cli:main" in entry_points
    for module in ("model/gsdocc.py", "pipeline/runner.py", "ros/node.py", "tools/cli.py"):
        assert f"gsdocc_ros/{module}" in names


def test_package_xml_declares_the_dependencies_by_rosdep_key() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "gsdocc_ros"
    declared = {e.text for e in root if e.tag.endswith("depend")}
    for key in ("rclpy", "sensor_msgs", "visualization_msgs", "geometry_msgs", "std_msgs", "diagnostic_msgs",
                "std_srvs", "tf2_ros", "tf2_msgs", "message_filters", "cv_bridge", "sensor_msgs_py",
                "rosidl_default_generators", "rosidl_default_runtime", "python3-torch", "python3-numpy",
                "launch_ros", "ament_cmake", "ament_cmake_python"):
        assert key in declared, key
    assert root.find("member_of_group").text == "rosidl_interface_packages"


def test_cmake_generates_every_message_and_installs_launch_and_config() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    for msg in (REPO / "msg").glob("*.msg"):
        assert f'"msg/{msg.name}"' in cmake
    assert "rosidl_generate_interfaces" in cmake and "DESTINATION lib/${PROJECT_NAME}" in cmake
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in cmake
    assert (REPO / "launch" / "gsdocc.launch.py").is_file() and (REPO / "config" / "gsdocc.yaml").is_file()


def test_gsdocc_command_lists_its_subcommands() -> None:
    out = subprocess.run([sys.executable, "-m", "gsdocc_ros.tools.cli", "--help"], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout
    for verb in ("node", "checkpoint", "nuscenes-to-bag", "play", "record", "eval", "render", "bench", "demo"):
        assert verb in out, verb


def test_launch_file_compiles_and_offers_the_user_arguments() -> None:
    """launch_ros is not installable here: check the file parses and declares every argument users change."""
    source = (REPO / "launch" / "gsdocc.launch.py").read_text()
    compile(source, "gsdocc.launch.py", "exec")
    for argument in ("config", "checkpoint", "device", "precision", "use_sim_time", "namespace", "rviz"):
        assert f'DeclareLaunchArgument("{argument}"' in source, argument
    assert 'executable="gsdocc_node"' in source and "gsdocc.rviz" in source
    assert (REPO / "config" / "gsdocc.rviz").is_file()
