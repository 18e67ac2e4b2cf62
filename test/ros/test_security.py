"""The node runs nothing it is handed: a checkpoint that would run code on unpickling is refused at start-up
(trust_pickle, off by default, is the only way past: test/model/test_checkpoint.py), and a bad parameter stops
start-up with one line naming it, never a traceback.

Path checks of the checkpoint parameter (missing, a folder, a device) are in test_params.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch


class _MakesADirectory:
    """Unpickling this calls os.mkdir: what a malicious checkpoint would do with something worse."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)

def start_node(python: str, env: dict[str, str], *params: str) -> subprocess.CompletedProcess:
    """`gsdocc node` with ``params`` (name:=value), expected to stop during start-up."""
    args = [arg for param in ("device:=cpu", *params) for arg in ("-p", param)]
    return subprocess.run([python, "-m", "gsdocc_ros.tools.cli", "node", "--ros-args", *args], env=env,
                          capture_output=True, text=True, timeout=300)

def test_node_refuses_a_checkpoint_that_runs_code(tmp_path: Path, subprocess_env: dict[str, str],
                                                   python: str) -> None:
    marker = tmp_path / "payload_ran"
    checkpoint = tmp_path / "gsdocc.pth"
    torch.save({"state_dict": {"img_backbone.conv1.weight": torch.zeros(1)}, "meta": _MakesADirectory(marker)},
               checkpoint)
    run = start_node(python, subprocess_env, f"checkpoint:={checkpoint}")
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "start-up failed" in output and "refused to unpickle" in output and "posix.mkdir" in output, output
    assert not marker.exists(), "the checkpoint's code ran"


@pytest.mark.parametrize(("param", "named"), [
    ("cameras:=[CAM_FRONT,CAM_FRONT]", "parameter 'cameras'"),  # any count is fine, twice the same is not
    ("sync_queue_size:=ten", "sync_queue_size"),
    ("image_topic_format:=/{0}/image", "parameter 'image_topic_format'"),
    ("image_topic_format:=/{camera}/image raw", "parameter 'image_topic_format'"),
])
def test_bad_parameters_stop_start_up_in_one_line(param: str, named: str, subprocess_env: dict[str, str],
                                                  python: str) -> None:
    run = start_node(python, subprocess_env, "allow_random_weights:=true", param)
    output = run.stdout + run.stderr
    assert run.returncode == 1 and "Traceback" not in output, output
    failed = [line for line in output.splitlines() if "start-up failed" in line]
    assert len(failed) == 1 and named in failed[0], output
