"""The node's command line checked before rclpy sees it, so that the two common slips end in one clear line.

rcl ends a missing or malformed ``--params-file`` in a long traceback, and ignores ``-p name:=value`` given
without ``--ros-args`` (it is not a ROS argument there). The node takes no arguments of its own, so every
ROS-looking argument outside ``--ros-args ... [--]`` is such a slip.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import yaml

ROS_FLAGS = ("-p", "--param", "-r", "--remap", "--params-file", "--log-level", "-e", "--enclave")
"""ROS arguments that are only read after ``--ros-args``."""


def _outside_ros_args(args: Sequence[str]) -> tuple[list[int], list[int]]:
    """(indices of arguments outside any ``--ros-args`` section, indices inside one)."""
    outside, inside, in_section = [], [], False
    for index, arg in enumerate(args):
        if arg == "--ros-args":
            in_section = True
        elif arg == "--" and in_section:
            in_section = False
        else:
            (inside if in_section else outside).append(index)
    return outside, inside


def params_file_problem(path: str) -> str | None:
    """Why ``path`` cannot serve as a ROS 2 parameters file, or None when it is a YAML mapping of node names."""
    file = Path(path)
    if not file.is_file():
        return f"params file {path} does not exist" if not file.exists() else f"params file {path} is not a file"
    try:
        content = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError) as error:
        return f"params file {path} cannot be read: {error}"
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        return f"params file {path} is not valid YAML{where}: {problem}"
    if not isinstance(content, dict) or not all(isinstance(v, dict) for v in content.values()):
        return (f"params file {path} must map node names to {{ros__parameters: {{...}}}} (see config/gsdocc.yaml), "
                f"got {type(content).__name__}")
    return None


def command_line_problem(args: Sequence[str], prog: str = "gsdocc_node") -> str | None:
    """One line saying what is wrong with the node's arguments ``args`` (program name excluded), or None."""
    outside, inside = _outside_ros_args(args)
    stray = [args[i] for i in outside]
    if any(arg in ROS_FLAGS or ":=" in arg for arg in stray):
        kept = [arg for arg in args if arg not in ("--ros-args", "--")]
        fixed = shlex.join([*prog.split(), "--ros-args", *kept])
        return f"ROS arguments must follow --ros-args, else they are ignored; run: {fixed}"
    if stray:
        return f"unexpected argument {stray[0]!r}: the node takes only ROS arguments (after --ros-args)"
    for position, index in enumerate(inside):
        if args[index] != "--params-file":
            continue
        if position + 1 == len(inside):
            return "--params-file needs a file name"
        problem = params_file_problem(args[inside[position + 1]])
        if problem is not None:
            return problem
    return None
