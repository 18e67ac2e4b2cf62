"""`colcon build` of this checkout in a fresh workspace over the venv's ROS 2: the installed layout and node are
what a ROS user relies on (`ros2 run`, launch files, `ros2 interface`, other packages using the message)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
COLCON = VENV / "bin" / "colcon"
"""colcon from PyPI (requirements-colcon.txt), linked into the venv by scripts/setup.sh."""

PACKAGE = "gsdocc_ros"
SITE = Path(sysconfig.get_path("purelib")).relative_to(VENV)
"""Where ament_cmake_python installs Python packages under a prefix (lib/python3.11/site-packages)."""

TYPESUPPORTS = ("generator_c", "generator_py", "typesupport_c", "typesupport_cpp", "typesupport_fastrtps_c",
                "typesupport_fastrtps_cpp", "typesupport_introspection_c", "typesupport_introspection_cpp")
"""The message's libraries, lib/lib<package>__rosidl_<name>.so: C and C++ type support, and the Python binding."""

PY_TYPESUPPORTS = ("c", "fastrtps_c", "introspection_c")
"""The Python extension modules rclpy loads the message through, <package>_s__rosidl_typesupport_<name>.so."""

START_S = 180
"""Longest wait for the node to come up (model construction with random weights takes seconds on 2 CPU cores)."""


def _without_checkout(pythonpath: str) -> str:
    """PYTHONPATH less this checkout (the Makefile puts it first), so that only the installed package can import."""
    return os.pathsep.join(p for p in pythonpath.split(os.pathsep) if p and Path(p).resolve() != REPO)


def _underlay_env() -> dict[str, str]:
    """This environment with the venv as the only ROS underlay, as a sourced ROS install would set it."""
    return {**os.environ, "AMENT_PREFIX_PATH": str(VENV), "CMAKE_PREFIX_PATH": str(VENV),
            "PATH": os.pathsep.join([str(VENV / "bin"), os.environ.get("PATH", "")]),
            "PYTHONPATH": _without_checkout(os.environ.get("PYTHONPATH", ""))}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A colcon workspace with this checkout in src/, built with `colcon build` (once for the module's tests)."""
    if not COLCON.is_file():
        pytest.fail(f"{COLCON} is missing: scripts/setup.sh installs colcon (requirements-colcon.txt)")
    ws = tmp_path_factory.mktemp("ws")
    (ws / "src").mkdir()
    (ws / "src" / PACKAGE).symlink_to(REPO, target_is_directory=True)
    # The Python the wheels' rosidl generators run with; no package tests (their ament_lint tools are not wheels).
    run = subprocess.run([str(COLCON), "build", "--cmake-args", f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}",
                          "-DBUILD_TESTING=OFF", "-Wno-dev"], cwd=ws, env=_underlay_env(), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"colcon build failed:\n{(run.stdout + run.stderr)[-6000:]}"
    return ws


def test_install_layout(workspace: Path) -> None:
    """Executable, share files, message code and libraries, and the ament index entries, where ROS tools look."""
    prefix = workspace / "install" / PACKAGE
    executable = prefix / "lib" / PACKAGE / "gsdocc_node"
    assert executable.is_file() and os.access(executable, os.X_OK), executable
    share = prefix / "share" / PACKAGE
    assert ET.parse(share / "package.xml").getroot().findtext("name") == PACKAGE
    for folder in ("launch", "config"):
        installed = sorted(p.name for p in (share / folder).iterdir())
        assert installed == sorted(p.name for p in (REPO / folder).iterdir()), folder
    messages = sorted(p.stem for p in (REPO / "msg").glob("*.msg"))
    site = prefix / SITE / PACKAGE
    for message in messages:
        module = re.sub(r"(?<!^)(?=[A-Z])", "_", message).lower()
        assert (site / "msg" / f"_{module}.py").is_file(), module
        assert (share / "msg" / f"{message}.msg").is_file() and (share / "msg" / f"{message}.idl").is_file()
    for name in TYPESUPPORTS:
        assert (prefix / "lib" / f"lib{PACKAGE}__rosidl_{name}.so").is_file(), name
    for name in PY_TYPESUPPORTS:
        assert (site / f"{PACKAGE}_s__rosidl_typesupport_{name}.so").is_file(), name
    assert (site / "ros" / "node.py").is_file() and (site / "model" / "gsdocc.py").is_file()
    index = prefix / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / PACKAGE).is_file()
    interfaces = (index / "rosidl_interfaces" / PACKAGE).read_text().split()
    assert all(f"msg/{message}.msg" in interfaces for message in messages), interfaces


def test_installed_executable_starts_the_node(workspace: Path, node: object) -> None:
    """lib/gsdocc_ros/gsdocc_node, run after sourcing install/setup.sh, comes up on the workspace's package and
    message libraries, publishes its grid type, and stops cleanly on Ctrl-C."""
    executable = workspace / "install" / PACKAGE / "lib" / PACKAGE / "gsdocc_node"
    setup = workspace / "install" / "setup.sh"
    command = ["bash", "-c", f'. {shlex.quote(str(setup))} && exec "$0" "$@"', str(executable),
               "--ros-args", "-p", "allow_random_weights:=true", "-p", "device:=cpu"]
    process = subprocess.Popen(command, env={**_underlay_env(), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        grid = ("/gsdocc/occupancy", ["gsdocc_ros/msg/SemanticVoxelGrid"])
        deadline = time.monotonic() + START_S
        while grid not in node.get_topic_names_and_types() and process.poll() is None:
            assert time.monotonic() < deadline, f"no {grid[0]} publisher after {START_S} s"
            time.sleep(0.5)
        assert process.poll() is None, f"the node exited with {process.returncode}:\n{process.communicate()[0]}"
        assert ("gsdocc", "/") in node.get_node_names_and_namespaces()
        # libraries whose file name is ours (the checkout's own folder may be called gsdocc_ros too)
        loaded = set(re.findall(r"\S*/[^/\s]*gsdocc_ros[^/\s]*\.so", Path(f"/proc/{process.pid}/maps").read_text()))
        install = str(workspace / "install" / PACKAGE)
        assert loaded and all(path.startswith(install) for path in loaded), sorted(loaded)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, out[-3000:]
    assert "model: GSD-OCC RANDOM WEIGHTS" in out and "stopping" in out, out[-3000:]
