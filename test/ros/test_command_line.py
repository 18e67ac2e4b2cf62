"""The node's two common bad starts end in one line naming the problem and the fix, before ROS starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gsdocc_ros.ros.command_line import command_line_problem, params_file_problem

REPO = Path(__file__).resolve().parents[2]


def test_ros_arguments_before_ros_args_are_refused_with_the_corrected_command() -> None:
    problem = command_line_problem(["-p", "device:=cpu"], prog="gsdocc node")
    assert problem == ("ROS arguments must follow --ros-args, else they are ignored; run: "
                       "gsdocc node --ros-args -p device:=cpu")
    assert "run: gsdocc_node --ros-args -p a:=1 -p b:=2" in command_line_problem(["-p", "a:=1", "--ros-args",
                                                                                   "-p", "b:=2"])
    assert command_line_problem(["--ros-args", "-p", "device:=cpu", "-r", "__ns:=/car"]) is None
    assert command_line_problem(["--ros-args", "-p", "a:=1", "--", "extra"]) == \
        "unexpected argument 'extra': the node takes only ROS arguments (after --ros-args)"


def test_params_files_are_checked(tmp_path: Path) -> None:
    assert params_file_problem(str(REPO / "config" / "gsdocc.yaml")) is None
    assert params_file_problem(str(tmp_path / "missing.yaml")) == f"params file {tmp_path / 'missing.yaml'} does not exist"
    assert params_file_problem(str(tmp_path)) == f"params file {tmp_path} is not a file"
    broken = tmp_path / "broken.yaml"
    broken.write_text("gsdocc:\n  ros__parameters:\n    device: [cpu\n")
    assert params_file_problem(str(broken)).startswith(f"params file {broken} is not valid YAML at line 4")
    flat = tmp_path / "flat.yaml"
    flat.write_text("device: cpu\n")
    assert "must map node names to {ros__parameters" in params_file_problem(str(flat))
    assert command_line_problem(["--ros-args", "--params-file", str(flat)]) == params_file_problem(str(flat))
    assert command_line_problem(["--ros-args", "--params-file"]) == "--params-file needs a file name"


@pytest.mark.parametrize(("args", "expected"), [
    (["--ros-args", "--params-file", "/missing.yaml"], "gsdocc node: error: params file /missing.yaml does not exist"),
    (["-p", "device:=cpu"], "gsdocc node: error: ROS arguments must follow --ros-args, else they are ignored; "
                            "run: gsdocc node --ros-args -p device:=cpu"),
])
def test_bad_starts_print_one_line_and_fail(args: list[str], expected: str, python: str,
                                           subprocess_env: dict[str, str]) -> None:
    run = subprocess.run([python, "-m", "gsdocc_ros.tools.cli", "node", *args], env=subprocess_env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip() == expected and run.stdout == ""
