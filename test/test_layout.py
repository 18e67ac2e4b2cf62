"""The package's layering, checked on its source: what may import what, no import circle, files of a readable size.

- model/, pipeline/, io/, evaluation/, viz/ and deploy/ are ROS-free: they import neither rclpy nor any ROS message or
  interface package, statically or when imported (only ros/ and the tools' lazily imported verbs touch ROS);
- no subcommand module of tools/ imports another (the dispatcher, cli.py, loads them by name);
- no circle in the graph of module-level imports between gsdocc_ros modules;
- a module over MAX_LINES says at the top of its docstring why it is longer.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gsdocc_ros"
ROS_FREE = ("model", "pipeline", "io", "evaluation", "viz", "deploy")
MAX_LINES = 400
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "builtin_interfaces", "rosidl_runtime_py", "tf2_ros", "message_filters",
                "rosgraph_msgs", "cv_bridge", "sensor_msgs_py", "launch", "launch_ros")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute module names imported by ``path`` (every import, or only the module-level statements)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_ros(name: str) -> bool:
    top = name.split(".")[0]
    return top in ROS_PACKAGES or top.endswith("_msgs") or top.endswith("_srvs") or name.startswith(
        ("gsdocc_ros.msg", "gsdocc_ros.ros"))


def test_ros_free_layers_import_no_ros_in_their_source() -> None:
    offending = {f"{path.relative_to(REPO)}: {name}" for layer in ROS_FREE for path in (PACKAGE / layer).rglob("*.py")
                 for name in imports(path) if is_ros(name)}
    assert not offending, sorted(offending)


def test_ros_free_layers_import_no_ros_when_loaded() -> None:
    modules = [module_name(path) for layer in ROS_FREE for path in sorted((PACKAGE / layer).rglob("*.py"))]
    probe = ("import importlib, json, sys\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = [name for name in json.loads(out.stdout) if is_ros(name)]
    assert not loaded, loaded


def test_no_subcommand_imports_another() -> None:
    tools = {module_name(path) for path in (PACKAGE / "tools").glob("*.py")}
    for path in (PACKAGE / "tools").glob("*.py"):
        others = {name for name in imports(path) if name.startswith("gsdocc_ros.tools")} - {"gsdocc_ros.tools"}
        assert not others & (tools - {module_name(path)}), f"{path.name} imports {sorted(others)}"


def test_no_import_circle_between_modules() -> None:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {other for other in modules if other != name and any(
        imported == other or imported.startswith(other + ".") and imported not in modules
        for imported in imports(path, top_level_only=True))} for name, path in modules.items()}
    graph = {name: {other for other in edges if not name.startswith(other + ".")} for name, edges in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            assert state.get(other) != 1, "import circle: " + " -> ".join([*trail, name, other])
            if other not in state:
                visit(other, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_long_modules_say_why() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            assert "Why this file is long:" in doc, f"{path.relative_to(REPO)}: {text.count(chr(10))} lines"


def test_gsdocc_help_loads_neither_torch_nor_ros_nor_matplotlib() -> None:
    probe = ("import contextlib, io, json, sys\n"
             "from gsdocc_ros.tools.cli import build_parser\n"
             "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
             "    build_parser().parse_args(['--help'])\n"
             "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    heavy = [name for name in json.loads(out.stdout) if name.split(".")[0] in ("torch", "rclpy", "matplotlib")]
    assert not heavy, heavy
