"""The node process stops within 2 s of SIGINT or SIGTERM in every state it can be in.

Sim time with no /clock (a bag that has ended: no timer ever fires), a camera set in the network (a forward of
seconds on this CPU, abandoned unpublished), and the prepare thread waiting for tf. Each case starts the node as
its own process, as `ros2 run` or launch does, and feeds it from this test over the middleware.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rclpy  # noqa: E402 (a missing rclpy is a broken install: fail, never skip)
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from ros_feeder import SampleFeeder, wait_for_subscribers  # noqa: E402

SCENE = "nuscenes_sample/scene-0061_ca9a282c"
STOP_WITHIN_S = 2.0


class NodeProcess:
    """`gsdocc node` as a child process whose log lines are collected as they come."""

    def __init__(self, python: str, env: dict[str, str], parameters: dict[str, str]) -> None:
        overrides = [arg for name, value in parameters.items() for arg in ("-p", f"{name}:={value}")]
        self.process = subprocess.Popen(
            [python, "-m", "gsdocc_ros.tools.cli", "node", "--ros-args", "-p", "device:=cpu",
             "-p", "allow_random_weights:=true", *overrides, "--log-level", "gsdocc:=debug"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout_s: float = 120.0, every_s: float = 0.5,
                 meanwhile: Callable[[], None] = lambda: None) -> None:
        """Block until a log line contains ``text``, calling ``meanwhile`` every ``every_s`` (e.g. to publish)."""
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, "the node exited:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no log line with {text!r}:\n" + "\n".join(self.lines)
            meanwhile()
            time.sleep(every_s)

    def stop(self, signum: int) -> float:
        """Send ``signum``; seconds until the process exited (it must exit with 0)."""
        start = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running 30 s after {signal.Signals(signum).name}:\n" + "\n".join(self.lines))
        elapsed = time.monotonic() - start
        self._reader.join(5)
        assert code == 0, f"exit code {code}:\n" + "\n".join(self.lines)
        return elapsed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def feeder(shared_data: Path, ros_domain: int) -> Iterator[tuple[SampleFeeder, SingleThreadedExecutor]]:
    """A tester node publishing the real sample on this test's domain."""
    rclpy.init()
    node = rclpy.create_node("stop_tester")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        yield SampleFeeder(node, shared_data / SCENE), executor
    finally:
        node.destroy_node()
        rclpy.shutdown()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_under_sim_time_without_clock(signum: int, python: str, subprocess_env: dict[str, str]) -> None:
    node = NodeProcess(python, subprocess_env, {"use_sim_time": "true"})
    try:
        node.wait_for("backends:")
        time.sleep(0.5)  # well into the spin: no /clock, so no timer is ever due
        assert node.stop(signum) < STOP_WITHIN_S
    finally:
        node.kill()


def stop_while(signum: int, node: NodeProcess, feeder: tuple[SampleFeeder, SingleThreadedExecutor], state: str,
               tf: bool) -> None:
    """Feed sets (with or without tf) until the node logs ``state``, then stop it: within STOP_WITHIN_S."""
    feed, executor = feeder
    try:
        node.wait_for("backends:")
        wait_for_subscribers(executor, list(feed.image_pubs.values()) + [feed.tf_pub], 60.0)
        feed.publish_static()
        offsets = iter(range(0, 10**12, 500_000_000))  # best-effort images: publish sets until one goes in
        node.wait_for(state, meanwhile=lambda: feed.publish_set(next(offsets), tf=tf))
        time.sleep(0.5)
        assert node.stop(signum) < STOP_WITHIN_S
    finally:
        node.kill()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_with_a_set_in_the_network(signum: int, python: str, subprocess_env: dict[str, str],
                                         feeder: tuple[SampleFeeder, SingleThreadedExecutor]) -> None:
    node = NodeProcess(python, subprocess_env, {})  # full 256x704 input: a forward takes seconds here
    stop_while(signum, node, feeder, "in the network", tf=True)
    assert any("abandoned" in line for line in node.lines), "\n".join(node.lines)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_while_waiting_for_tf(signum: int, python: str, subprocess_env: dict[str, str],
                                    feeder: tuple[SampleFeeder, SingleThreadedExecutor]) -> None:
    """Images but no map -> base_link: the prepare thread waits for tf (tf_wait_s 60 s) when the signal comes."""
    stop_while(signum, NodeProcess(python, subprocess_env, {"tf_wait_s": "60.0"}), feeder, "waiting for tf",
               tf=False)
