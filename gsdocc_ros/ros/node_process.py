"""The occupancy node as a child process (`gsdocc node`), and its /diagnostics values as the demo and the soak read
them."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import gsdocc_ros
from gsdocc_ros.ros.counters import sets_in_flight


GRID_TOPIC = "/gsdocc/occupancy"


DIAGNOSTICS_TOPIC = "/diagnostics"


NODE_NAME = "/gsdocc"


STOP_TIMEOUT_S = 10.0
"""How long the node may take to stop after SIGINT (it finishes the inference in progress) before SIGKILL."""


class NodeProcess:
    """The occupancy node as a child process, its output going to a log file; stop() always ends it."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        package_root = str(Path(gsdocc_ros.__file__).resolve().parents[1])  # the child imports this same package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        with open(log, "wb") as stream:
            self.process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 8) -> str:
        """The last lines of its log, for error messages."""
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:]) or "(empty log)"

    def stop(self) -> str:
        """SIGINT, then SIGKILL after STOP_TIMEOUT_S; returns how it ended."""
        if not self.alive():
            return f"exited with code {self.process.returncode}"
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
            return f"stopped (code {self.process.returncode})"
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return f"killed after not stopping within {STOP_TIMEOUT_S:.0f} s"


@dataclass
class DiagnosticsReport:
    """The node's latest /diagnostics values."""

    values: dict[str, str]
    arrived: float

    def counter(self, name: str) -> int:
        return int(self.values.get(name, 0))

    def stages_ms(self) -> dict[str, float]:
        """Per-stage wall times (ms) of the node's last inferred set."""
        return {k[len("stage_"):-len("_ms")]: float(v) for k, v in self.values.items()
                if k.startswith("stage_") and k.endswith("_ms")}

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.values.items() if v.isdigit()}

    def idle(self) -> bool:
        """True when every camera set the node received has an outcome (grid, skip, drop, rejection, error)."""
        return sets_in_flight(self.counters()) == 0
