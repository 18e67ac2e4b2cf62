"""The package builds the ways users install it: pip (pure Python + `gsdocc`), colcon (package.xml + CMake)."""

from __future__ import annotations

import ast
import os
import re
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


PYTHON_KEYS = {
    "numpy": "python3-numpy", "PIL": "python3-pil", "torch": "python3-torch", "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib", "yaml": "python3-yaml", "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis", "cv2": "python3-opencv",
    # No Debian/Ubuntu package: these keys make rosdep install them with pip.
    "simplejpeg": "python3-simplejpeg-pip", "rosbags": "python3-rosbags-pip", "nuscenes": "python3-nuscenes-devkit-pip",
}
"""rosdep key of each third-party Python module (ros/rosdistro rosdep/python.yaml, read at 8468e88 of 2026-08-22);
a ROS package's key is its own name."""

NO_ROSDEP_KEY = {"mcap": "the tests' independent reader of .mcap files (rosdistro has no key; requirements.txt pins it)"}
"""Test-only modules rosdep cannot name, with why each is needed; scripts/setup.sh installs them with pip."""

OPTIONAL_DEPLOYMENT = {"onnx", "onnxscript", "onnxruntime", "openvino", "tensorrt"}
"""Modules of `gsdocc export` and the graph backends (gsdocc_ros/deploy), imported only when asked for: the node runs
without them, so package.xml does not declare them (requirements.txt pins the CPU ones; TensorRT comes with the
target's NVIDIA stack)."""

NOT_IMPORTED = {"python3-pytest-timeout": "pytest.ini"}
"""Keys no import shows, with the file that needs each (pytest.ini's `timeout` is a pytest-timeout option)."""

DYNAMIC_IMPORTERS = {"genuine", "import_module", "importorskip"}
"""Calls that import the module their first argument names: ros/backends.py's seam to tf2_ros/message_filters/cv_bridge,
importlib, pytest."""

TAG_USES = {"buildtool_depend": {"build"}, "build_depend": {"build"}, "depend": {"build", "run"},
            "exec_depend": {"run"}, "test_depend": {"test"}}
"""What each package.xml dependency tag provides for."""


def _needed_names(path: Path) -> set[str]:
    """Top-level modules a Python file imports (statements, and DYNAMIC_IMPORTERS calls with a literal name) and the
    packages a launch file starts (``package=`` of a launch_ros Node)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call):
            called = getattr(node.func, "id", getattr(node.func, "attr", None))
            if called in DYNAMIC_IMPORTERS and node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
            names.update(keyword.value.value for keyword in node.keywords
                         if keyword.arg == "package" and isinstance(keyword.value, ast.Constant))
    return {name.split(".")[0] for name in names}


def _python_needs(paths: list[Path], local: set[str]) -> dict[str, set[str]]:
    """rosdep key -> the files among ``paths`` needing it; the standard library, gsdocc_ros and ``local`` left out."""
    needs: dict[str, set[str]] = {}
    for path in paths:
        for name in _needed_names(path) - set(sys.stdlib_module_names) - local - {"gsdocc_ros"} - OPTIONAL_DEPLOYMENT:
            needs.setdefault(PYTHON_KEYS.get(name, name), set()).add(str(path.relative_to(REPO)))
    return needs


def _dependency_needs() -> dict[str, dict[str, set[str]]]:
    """For build, run and test: rosdep key -> the files needing it."""
    cmake = (REPO / "CMakeLists.txt").read_text()
    # What the generated message code runs on: the exported runtime and the packages of the message's fields.
    generated = re.findall(r"ament_export_dependencies\(([^)]*)\)"
                           r"|rosidl_generate_interfaces\([^)]*DEPENDENCIES([^)]*)\)", cmake)
    run = _python_needs([*(REPO / "gsdocc_ros").rglob("*.py"), REPO / "scripts" / "gsdocc_node",
                         *(REPO / "launch").glob("*.py")], set())
    for key in " ".join(" ".join(match) for match in generated).split():
        run.setdefault(key, set()).add("CMakeLists.txt")
    tests = sorted((REPO / "test").rglob("*.py"))
    test = {key: files for key, files in _python_needs(tests, {path.stem for path in tests}).items()
            if key not in run and key not in NO_ROSDEP_KEY}
    for key, path in NOT_IMPORTED.items():
        test.setdefault(key, set()).add(path)
    return {"build": {key: {"CMakeLists.txt"} for key in re.findall(r"find_package\((\w+)", cmake)}, "run": run,
            "test": test}


def test_package_xml_declares_exactly_what_the_code_needs() -> None:
    """Every import (and CMake package) is declared under a tag that covers its use, by rosdep key; every
    declaration is needed for each use its tag says."""
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "gsdocc_ros"
    assert root.find("member_of_group").text == "rosidl_interface_packages"
    declared = [(element.tag, element.text) for element in root if element.tag.endswith("depend")]
    needs = _dependency_needs()
    problems = [f"{key}: <{tag}> is not one of {sorted(TAG_USES)}" for tag, key in declared if tag not in TAG_USES]
    problems += [f"{key} is declared as {tag} but nothing needs it for {use}"
                 for tag, key in declared for use in sorted(TAG_USES.get(tag, ())) if key not in needs[use]]
    for use, keys in needs.items():
        for key, files in sorted(keys.items()):
            if not any(key == name and use in TAG_USES.get(tag, ()) for tag, name in declared):
                problems.append(f"{key} (needed by {', '.join(sorted(files)[:3])}) is not declared for {use}; "
                                f"third-party Python modules go by their rosdep key (PYTHON_KEYS)")
    assert not problems, "\n".join(problems)


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


def test_generic_rig_launch_file_uses_the_rig_params_file() -> None:
    """The generic-rig example starts gsdocc.launch.py with config/generic_rig.yaml (the node test runs that file)."""
    source = (REPO / "launch" / "generic_rig.launch.py").read_text()
    compile(source, "generic_rig.launch.py", "exec")
    assert '"gsdocc.launch.py"' in source and '"generic_rig.yaml"' in source and '"config":' in source
    assert (REPO / "config" / "generic_rig.yaml").is_file()


def test_setup_names_a_missing_build_tool_before_installing_anything(tmp_path: Path) -> None:
    """scripts/setup.sh on a machine without CMake: one line naming it and how to get it, and no .venv made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cat", "sha256sum", "cut", "python3"):  # what the script may call before its checks
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    venv = tmp_path / "venv"
    done = subprocess.run(["/bin/bash", str(REPO / "scripts" / "setup.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "VENV": str(venv), "HOME": str(tmp_path)}, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip() == ("[setup] error: cmake not found: the messages are built with CMake and a C/C++ "
                                   "compiler (Debian/Ubuntu: apt install cmake g++)")
    assert not venv.exists()
