"""gsdocc demo: the whole pipeline on the generated street bag, its outputs, its errors and its clean shutdown.

The end-to-end test runs the real node (seeded random weights, CPU, full input size) on two camera sets and
checks that its first grid is exactly what the ROS-free runner computes from the same bag offline.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.pipeline.frames import CAMERA_NAMES, KEY_CAMERA, CameraFrame
from gsdocc_ros.pipeline.geometry import camera_to_key_ego, make_transform, quaternion_to_matrix
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model
from gsdocc_ros.ros.stages import NodeStage
from gsdocc_ros.tools import cli
from gsdocc_ros.io.bags import bag_typestore, open_bag
from gsdocc_ros.io.grid_files import read_grid_file


KEYFRAMES = 2
SUMMARY_KEYS = {"bag", "synthetic", "weights", "device", "rate", "camera_sets_in_bag", "camera_sets_played",
                "camera_sets_received_by_node", "grids_out", "latency_ms", "node_processing_ms",
                "node_stages_ms_last_grid", "node_stage_descriptions", "machine", "node_counters", "grids", "node_log",
                "node_end", "wall_s"}


REPO = Path(__file__).resolve().parents[2]


def _demo(python: str, *args: str) -> list[str]:
    return [python, "-m", "gsdocc_ros.tools.cli", "demo", "--device", "cpu", *args]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, python: str) -> tuple[subprocess.CompletedProcess, Path]:
    """One demo run on a two-set synthetic bag (module scope: the test below and the offline check share it)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), FASTDDS_BUILTIN_TRANSPORTS="SHM",
               PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(_demo(python, "--out", str(out), "--keyframes", str(KEYFRAMES)), env=env,
                          capture_output=True, text=True, timeout=600)
    return done, out


@pytest.mark.slow
def test_demo_end_to_end(demo_run) -> None:
    done, out = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RANDOM WEIGHTS" in done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith(f"wrote {out / 'summary.json'}")

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["synthetic"] is True and summary["device"] == "cpu" and "RANDOM" in summary["weights"]
    assert summary["camera_sets_in_bag"] == summary["camera_sets_played"] == KEYFRAMES
    assert summary["camera_sets_received_by_node"] == KEYFRAMES
    assert summary["grids_out"] == len(summary["grids"]) == KEYFRAMES  # the CPU rate leaves time for every set
    assert summary["node_counters"]["grids_out"] == KEYFRAMES
    assert summary["node_end"] == "stopped (code 0)"
    assert 0 < summary["node_processing_ms"]["min"] <= summary["latency_ms"]["max"]
    assert summary["node_stages_ms_last_grid"]["network"] > 0
    # Every stage the node reports is one of ours, and described in words in the summary and on stdout.
    stages, described = summary["node_stages_ms_last_grid"], summary["node_stage_descriptions"]
    assert set(stages) == set(NodeStage) and set(stages) <= set(described)
    for stage in stages:
        assert any(line.split()[:1] == [stage] and line.endswith(described[stage]) for line in done.stdout.splitlines())
    machine = summary["machine"]
    assert machine["cpu_count"] == os.cpu_count()
    for key in ("load_at_start", "load_at_end"):
        assert len(machine[key]) == 3 and all(isinstance(v, float) and v >= 0 for v in machine[key])
    assert f"on {os.cpu_count()} cores at load {machine['load_at_start'][0]:.1f} -> " in done.stdout
    assert sorted(p.name for p in (out / "pictures").iterdir()) == [f"synthetic-street-{i:03d}.png"
                                                                   for i in range(KEYFRAMES)]  # one per set

    for index, row in enumerate(summary["grids"]):
        token = f"synthetic-street-{index:03d}"
        assert row["file"] == f"grids/{token}.npz"
        labels = read_grid_file(out / row["file"]).labels
        assert row["occupied_voxels"] == int(np.count_nonzero(labels != 17))
        assert row["latency_ms"] > 0
        with Image.open(out / row["picture"]) as picture:
            picture.load()
            # cameras, prediction and truth side by side with a reading line: 21 x 12.8 inches at 100 dpi
            assert picture.format == "PNG" and picture.size == (2100, 1280)
        truth = read_grid_file(out / row["truth"]).labels
        assert np.count_nonzero(truth == 4) > 0  # the truth holds the street's cars


def _bag_frames(bag: Path, index: int) -> tuple[list[CameraFrame], np.ndarray, int]:
    """The camera frames, key ego pose and key stamp of camera set ``index``, from the bag alone (no ROS)."""
    store = bag_typestore()
    reader = open_bag(bag)
    try:
        msgs = [(c.topic, t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]
    finally:
        reader.close()

    def pose(transform: object) -> np.ndarray:
        t, q = transform.transform.translation, transform.transform.rotation
        return make_transform(quaternion_to_matrix([q.x, q.y, q.z, q.w]), [t.x, t.y, t.z])

    static = {t.child_frame_id: pose(t) for topic, _, m in msgs if topic == "/tf_static" for t in m.transforms}
    ego = {stamp: pose(m.transforms[0]) for topic, stamp, m in msgs if topic == "/tf"}
    images = {name: [(t, m) for topic, t, m in msgs if topic == f"/{name}/image_rect_compressed"][index]
              for name in CAMERA_NAMES}
    infos = {name: [m for topic, _, m in msgs if topic == f"/{name}/camera_info"][index] for name in CAMERA_NAMES}
    key_stamp = images[KEY_CAMERA][0]
    frames = [CameraFrame(name=name, image=np.asarray(Image.open(io.BytesIO(msg.data.tobytes())).convert("RGB")),
                          intrinsics=infos[name].k.reshape(3, 3),
                          cam_to_ego=camera_to_key_ego(static[name], ego[stamp], ego[key_stamp]), stamp_ns=stamp)
              for name, (stamp, msg) in images.items()]
    return frames, ego[key_stamp], key_stamp


@pytest.mark.slow
def test_demo_first_grid_matches_offline_runner(demo_run) -> None:
    """The node's grid of the first set equals, voxel for voxel, the ROS-free runner's on the same bag.

    Random weights depend only weakly on their input, hence a tight bound: the other set's images change 22
    labels, extrinsics 0.2 m off change 377 (measured when this test was written), while the summation order
    of multi-threaded CPU kernels (two processes) can flip a few near-ties, hence at most 5 and one confidence level.
    """
    done, out = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    frames, ego2global, stamp = _bag_frames(out / "synthetic_bag", 0)
    model, _ = load_model(None, ModelConfig(), allow_random_weights=True)
    expected = OccupancyRunner(model, RunnerConfig(device="cpu")).step(frames, ego2global, stamp).grid
    with np.load(out / "grids" / "synthetic-street-000.npz") as node_grid:
        assert int(node_grid["stamp_ns"]) == stamp
        differ = int(np.count_nonzero(node_grid["semantics"] != expected.labels))
        confidence_gap = np.abs(node_grid["confidence"].astype(int) - expected.confidence.astype(int)).max()
    assert differ <= 5, f"node and offline runner disagree on {differ} voxels"
    assert confidence_gap <= 1


def test_missing_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Each argument error is the only line printed: no random-weights banner, nothing written."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "bytes.bin").write_bytes(b"\x01" * 64)
    (tmp_path / "empty.pth").touch()
    for args, expected in (
            (["--bag", str(tmp_path / "nope")], f"bag {tmp_path / 'nope'} does not exist"),
            (["--bag", str(tmp_path / "folder")], f"{tmp_path / 'folder'} is not a ROS 2 bag directory (no metadata"),
            (["--bag", str(tmp_path / "bytes.bin")], f"{tmp_path / 'bytes.bin'} is not a ROS 2 bag directory"),
            (["--checkpoint", str(tmp_path / "w.pth")], f"checkpoint {tmp_path / 'w.pth'} does not exist"),
            (["--checkpoint", str(tmp_path / "empty.pth")], f"checkpoint {tmp_path / 'empty.pth'} is empty (0 bytes)"),
            (["--checkpoint", str(tmp_path / "folder")], f"checkpoint {tmp_path / 'folder'} is a directory"),
            (["--rate", "0"], "--rate must be positive")):
        assert cli.main(["demo", *args, "--out", str(tmp_path / "out")]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith(f"gsdocc demo: error: {expected}"), captured.err
        assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert not (tmp_path / "out").exists()  # refused before anything was written
    (tmp_path / "old" / "synthetic_bag").mkdir(parents=True)  # a previous demo's bag, about to be replaced
    assert cli.main(["demo", "--bag", str(tmp_path / "old" / "synthetic_bag"), "--out", str(tmp_path / "old")]) == 2
    assert "lies inside --out" in capsys.readouterr().err
    assert (tmp_path / "old" / "synthetic_bag").is_dir()


def test_error_is_one_line_from_python_m(tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> None:
    """`python -m gsdocc_ros.tools.cli demo` (as the tests run it) reports a user error in one line, exit 2."""
    done = subprocess.run(_demo(python, "--bag", str(tmp_path / "nope")), env=subprocess_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"gsdocc demo: error: bag {tmp_path / 'nope'} does not exist"


def test_refuses_an_out_folder_it_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "thesis.tex").write_text("keep me")
    assert cli.main(["demo", "--out", str(tmp_path)]) == 2
    assert "holds files the demo did not write (thesis.tex)" in capsys.readouterr().err
    assert (tmp_path / "thesis.tex").read_text() == "keep me"


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def test_ctrl_c_stops_the_node(tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> None:
    """SIGINT to the demo while the node starts: the demo exits 130 and its node process is gone."""
    out = tmp_path / "out"
    demo = subprocess.Popen(_demo(python, "--out", str(out), "--keyframes", "1"),
                            env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not _children(demo.pid) and demo.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        nodes = _children(demo.pid)
        assert len(nodes) == 1, "the demo did not start its node"
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, err[-2000:]
    assert "gsdocc demo: interrupted" in err
    assert not Path(f"/proc/{nodes[0]}").exists(), "the node outlived the demo"


def test_bag_without_the_cameras_is_refused_before_the_banner(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A real bag that holds only tf: one line naming the missing camera topic and where bags come from."""
    from rosbags.rosbag2 import StoragePlugin

    from gsdocc_ros.io.bags import DEFAULT_DISTRO, bag_typestore, bag_writer

    bag = tmp_path / "tf_only"
    typestore = bag_typestore()
    with bag_writer(bag, DEFAULT_DISTRO, StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=typestore)
        message = typestore.types["tf2_msgs/msg/TFMessage"](transforms=[])
        writer.write(connection, 1, typestore.serialize_cdr(message, "tf2_msgs/msg/TFMessage"))
    assert cli.main(["demo", "--bag", str(bag), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == (
        f"gsdocc demo: error: bag {bag} has no /CAM_FRONT/image_rect_compressed; the node needs the six "
        "/CAM_*/image_rect_compressed topics (see gsdocc nuscenes-to-bag)")
    assert not (tmp_path / "out").exists()
