"""Fixtures shared by the whole suite: the real sample data, and ROS isolation per test."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from gsdocc_ros.io.sample_location import SAMPLE_DATA_VARIABLE, sample_data_folder

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = sample_data_folder()


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes under test as it would from a terminal, even when the suite itself was started in
    the background, where the shell makes it ignore SIGINT (a handled signal is reset to the default on exec, an
    ignored one stays ignored, and Python then never raises KeyboardInterrupt)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real nuScenes / Occ3D samples (../shared/data or $GSDOCC_SAMPLE_DATA, never copied into the
    repo)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample data folder missing: {SHARED_DATA}; build it from nuScenes v1.0-mini and Occ3D-nuScenes "
                    f"with `gsdocc sample-data --nuscenes DATAROOT --occ3d OCC3D_DIR --out FOLDER` and set "
                    f"{SAMPLE_DATA_VARIABLE}=FOLDER (README, section \"Sample data\")", pytrace=False)
    return SHARED_DATA


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A fresh ROS_DOMAIN_ID for this test and the processes it starts, on shared memory only."""
    domain = random.randint(1, 200)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "SHM")
    return domain


@pytest.fixture
def subprocess_env(ros_domain: int) -> dict[str, str]:
    """Environment for a child Python process that must import this checkout and join the test's domain."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def node(ros_domain: int) -> Iterator[object]:
    """An rclpy node of the test's own, in its own context on the test's domain (publish, subscribe, see the graph)."""
    import rclpy  # here, not at the top: tests without ROS still collect where rclpy is missing

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("gsdocc_test", context=context)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter running the tests (the project's venv)."""
    return sys.executable


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """Import a script of benchmarks/ by file name (they are run as files, not installed as modules)."""
    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
