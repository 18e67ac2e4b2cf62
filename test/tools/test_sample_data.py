"""gsdocc sample-data on a real (tiny) nuScenes dataroot: the folder it writes is the shared sample folder's layout.

The dataroot is built from ../shared/data's scene-0061 keyframe (its tables, JPEGs and LiDAR scan) under v1.0-mini,
with the links a full download has (scene first/last sample, prev/next) and a second keyframe of the scene, so the
cut to one sample has something to cut; the Occ3D tree holds the shared labels.npz under gts/<scene>/<token>/.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gsdocc_ros.io import sample_folder
from gsdocc_ros.io.sample_folder import OCC3D_TOKEN, SCENE_0061, Tables

REPO = Path(__file__).resolve().parents[2]
SCENE = Path("nuscenes_sample") / SCENE_0061.folder
LOGFILE = "n015-2018-07-24-11-22-45+0800"
"""scene-0061's log, as its file names start."""


def token(*parts: object) -> str:
    """A deterministic 32-hex nuScenes-like token."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def make_dataroot(root: Path, shared_data: Path) -> Path:
    """A v1.0-mini dataroot: the real scene-0061 keyframe, plus a second keyframe 0.5 s later with the same files."""
    source = shared_data / SCENE
    tables = {p.stem: json.loads(p.read_text()) for p in (source / "v1.0-test").glob("*.json")}
    first = tables["sample"][0]
    second = dict(first, token=token("sample", 1), timestamp=first["timestamp"] + 500_000)
    first.update(prev="", next=second["token"])
    second.update(prev=first["token"], next="")
    tables["sample"].append(second)
    tables["scene"][0].update(first_sample_token=first["token"], last_sample_token=second["token"])
    for record in list(tables["sample_data"]):
        later = dict(record, token=token(record["token"]), ego_pose_token=token(record["token"]),
                     sample_token=second["token"], timestamp=record["timestamp"] + 500_000, prev=record["token"],
                     next="")
        record.update(prev="", next=later["token"])
        pose = next(p for p in tables["ego_pose"] if p["token"] == record["ego_pose_token"])
        tables["ego_pose"].append(dict(pose, token=later["token"], timestamp=later["timestamp"]))
        tables["sample_data"].append(later)
    tables["log"] = [{"token": tables["scene"][0]["log_token"], "logfile": LOGFILE, "vehicle": "n015",
                      "date_captured": "2018-07-24", "location": "singapore-onenorth"}]
    for name, records in tables.items():
        write(root / "v1.0-mini" / f"{name}.json", records)
    (root / "samples").symlink_to(source / "samples")
    (root / "LICENSE").symlink_to(shared_data / "nuscenes_sample" / sample_folder.LICENSE_NAME)
    return root


def make_occ3d(root: Path, shared_data: Path) -> Path:
    """An Occ3D-nuScenes tree holding the shared labels.npz at gts/<scene>/<token>/labels.npz, among others."""
    for scene, sample in (("scene-0001", token("other")), ("scene-0002", OCC3D_TOKEN)):
        (root / "gts" / scene / sample).mkdir(parents=True)
        (root / "gts" / scene / sample / "labels.npz").symlink_to(shared_data / "occ3d_sample" / "labels.npz")
    return root


def gsdocc(*args: object) -> subprocess.CompletedProcess:
    """``gsdocc`` run as a user runs it, in a child process of this checkout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "gsdocc_ros.tools.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, str]:
    """(the folder `gsdocc sample-data` wrote from the mini dataroot and the Occ3D tree, its stderr)."""
    base = tmp_path_factory.mktemp("sample_data")
    root = make_dataroot(base / "nuscenes", shared_data)
    occ3d = make_occ3d(base / "occ3d", shared_data)
    out = base / "out"
    done = gsdocc("sample-data", "--nuscenes", root, "--occ3d", occ3d, "--out", out)
    assert done.returncode == 0, done.stderr
    return out, done.stderr


def assert_same(ours: object, shared: object, where: str) -> None:
    """Every field of ``shared`` (provenance notes aside) is in ``ours``: strings and integers equal, numbers equal
    to float rounding (the shared file was derived in float32 from a pkl: 1e-5 m at 1,000 m)."""
    if isinstance(shared, dict):
        for key, value in shared.items():
            if not key.endswith("_note"):
                assert key in ours, f"{where}: {key} missing"
                assert_same(ours[key], value, f"{where}.{key}")
    elif isinstance(shared, list) and shared and isinstance(np.ravel(shared)[0], float):
        np.testing.assert_allclose(ours, shared, rtol=1e-7, atol=1e-6, err_msg=where)
    else:
        assert ours == shared, where


def test_scene_0061_folder_is_the_shared_one(built: tuple[Path, str], shared_data: Path) -> None:
    """calib.json field by field, JPEGs and LiDAR byte for byte, the tables cut to the one sample as shared."""
    out, _ = built
    ours = json.loads((out / SCENE / "calib.json").read_text())
    assert_same(ours, json.loads((shared_data / SCENE / "calib.json").read_text()), "calib.json")
    shared_files = sorted(p.relative_to(shared_data / SCENE) for p in (shared_data / SCENE / "samples").rglob("*.*"))
    assert len(shared_files) == 7
    assert sorted(p.relative_to(out / SCENE) for p in (out / SCENE / "samples").rglob("*.*")) == shared_files
    for name in shared_files:
        assert (out / SCENE / name).read_bytes() == (shared_data / SCENE / name).read_bytes(), name
    tables = sorted(p.name for p in (shared_data / SCENE / "v1.0-test").glob("*.json"))
    assert sorted(p.name for p in (out / SCENE / "v1.0-test").glob("*.json")) == tables
    for name in tables:
        assert json.loads((out / SCENE / "v1.0-test" / name).read_text()) == json.loads(
            (shared_data / SCENE / "v1.0-test" / name).read_text()), name


def test_occ3d_labels_and_licence_are_copied(built: tuple[Path, str], shared_data: Path) -> None:
    out, _ = built
    assert (out / "occ3d_sample" / "labels.npz").read_bytes() == (
        shared_data / "occ3d_sample" / "labels.npz").read_bytes()
    licence = Path("nuscenes_sample") / sample_folder.LICENSE_NAME
    assert (out / licence).read_bytes() == (shared_data / licence).read_bytes()


def test_parts_mini_lacks_are_one_line_each(built: tuple[Path, str]) -> None:
    """No scene-0003 (v1.0-trainval) nor mini val scenes here: one line each, naming the tests that need them."""
    out, stderr = built
    assert not (out / "nuscenes_sample" / "scene-0003_fd842039").exists()
    assert not (out / "nuscenes_sample" / "mini_val_poses").exists()
    lines = [line for line in stderr.splitlines() if "not built" in line]
    assert len(lines) == 2, stderr
    assert "scene-0003_fd842039" in lines[0] and "v1.0-trainval" in lines[0] and "test_preprocess" in lines[0]
    assert "mini_val_poses" in lines[1] and "scene-0103" in lines[1] and "test_ray_metrics" in lines[1]


def test_keyframe_poses_follow_the_calibration(tmp_path: Path, shared_data: Path) -> None:
    """poses.json's record of a keyframe carries the same matrices as the shared calib.json of that keyframe."""
    tables = Tables(make_dataroot(tmp_path, shared_data), "v1.0-mini")
    poses = sample_folder.keyframe_poses(tables, SCENE_0061.token)
    calib = json.loads((shared_data / SCENE / "calib.json").read_text())
    assert poses["lidar_name"] == Path(calib["lidar"]["file"]).name
    assert_same(poses, {key: calib[key] for key in ("sample_token", "timestamp_us", "ego2global", "lidar2ego")},
                "poses")
    for name, camera in calib["cameras"].items():
        assert poses["cameras"][name]["image_name"] == Path(camera["image"]).name
        assert_same(poses["cameras"][name], {key: camera[key] for key in (
            "timestamp_us", "intrinsics", "sensor2ego", "ego2global")}, name)


def test_missing_table_is_one_line_naming_the_file(tmp_path: Path, shared_data: Path) -> None:
    root = make_dataroot(tmp_path / "nuscenes", shared_data)
    (root / "v1.0-mini" / "sample_data.json").unlink()
    done = gsdocc("sample-data", "--nuscenes", root, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 2 and "Traceback" not in done.stderr  # the progress line, then the error
    error = done.stderr.splitlines()[-1]
    assert error.startswith("gsdocc sample-data: error: ")
    assert str(root / "v1.0-mini" / "sample_data.json") in error and "<dataroot>/<version>/<table>.json" in error
    assert "sample_annotation" not in error  # only the tables the folder is built from are asked for
    assert not (tmp_path / "out").exists()


def test_wrong_version_and_occ3d_folder_are_one_line(tmp_path: Path, shared_data: Path) -> None:
    root = make_dataroot(tmp_path / "nuscenes", shared_data)
    done = gsdocc("sample-data", "--nuscenes", root, "--version", "v1.0-trainval", "--out", tmp_path / "out")
    assert done.returncode == 2 and "v1.0-trainval" in done.stderr and "v1.0-mini" in done.stderr
    done = gsdocc("sample-data", "--nuscenes", root, "--occ3d", tmp_path, "--out", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"--occ3d {tmp_path} has no gts/ folder" in done.stderr
    done = gsdocc("sample-data", "--nuscenes", root / "LICENSE", "--out", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"--nuscenes {root / 'LICENSE'} is not a directory" in done.stderr
    assert "holds samples/, v1.0-mini/ and LICENSE" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_kept_without_force(tmp_path: Path, shared_data: Path) -> None:
    root = make_dataroot(tmp_path / "nuscenes", shared_data)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    done = gsdocc("sample-data", "--nuscenes", root, "--out", out)
    assert done.returncode == 2 and "exists; pass --force" in done.stderr
    assert (out / "mine.txt").read_text() == "keep"
    done = gsdocc("sample-data", "--nuscenes", root, "--out", out, "--force")
    assert done.returncode == 0, done.stderr
    assert not (out / "mine.txt").exists() and (out / SCENE / "calib.json").is_file()
    assert "not built: occ3d_sample/labels.npz (pass --occ3d OCC3D_DIR)" in done.stderr


@pytest.mark.parametrize(("marker", "needed_by"), [
    (SCENE_0061.folder, SCENE_0061.needed_by), (sample_folder.SCENE_0003.folder, sample_folder.SCENE_0003.needed_by),
    ("mini_val_poses", sample_folder.POSES_NEEDED_BY), ("occ3d_sample", sample_folder.OCC3D_NEEDED_BY)])
def test_needed_by_lists_the_test_modules_that_read_the_part(marker: str, needed_by: tuple[str, ...]) -> None:
    """The 'needed by' of each left-out line is what test/ really reads (test/deploy reads through deploy_data)."""
    readers = {path.stem for path in (REPO / "test").rglob("*.py")
               if marker in path.read_text() and path.stem not in ("test_sample_data", "conftest")}
    assert readers == set(needed_by)


def test_existing_tests_pass_on_the_built_folder(built: tuple[Path, str], tmp_path: Path) -> None:
    """GSDOCC_SAMPLE_DATA points the suite at the built folder: tests of scene-0061 and the Occ3D labels pass."""
    out, _ = built
    tests = ["test/pipeline/test_geometry.py", "test/pipeline/test_metrics.py", "test/pipeline/test_rig_fit.py"]
    env = dict(os.environ, GSDOCC_SAMPLE_DATA=str(out))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout and "error" not in done.stdout
    env["GSDOCC_SAMPLE_DATA"] = str(tmp_path / "absent")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests[1]], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert f"sample data folder missing: {tmp_path / 'absent'}" in done.stdout
    assert "gsdocc sample-data --nuscenes DATAROOT" in done.stdout and 'section "Sample data"' in done.stdout


def test_trainval_layout_and_scene_poses_on_the_real_keyframe(tmp_path: Path, shared_data: Path) -> None:
    """scene-0003's layout (imgs/CAM_*.jpg, this keyframe and the next) and poses.json's scene walk, exercised on
    scene-0061: the frames load, the JPEGs are the originals, the second frame is calibration only."""
    from gsdocc_ros.pipeline.frames import load_sample_frames

    tables = Tables(make_dataroot(tmp_path / "nuscenes", shared_data), "v1.0-mini")
    renamed = sample_folder.Keyframe("renamed", SCENE_0061.token, True, ())
    sample_folder.write_keyframe(tables, renamed, tmp_path / "renamed")
    calib = json.loads((tmp_path / "renamed" / "calib.json").read_text())
    shared = json.loads((shared_data / SCENE / "calib.json").read_text())
    first, second = calib["frames"]
    assert first["images_available"] and not second["images_available"] and "lidar" not in second
    assert second["timestamp_us"] == first["timestamp_us"] + 500_000
    assert all(camera["image"] is None for camera in second["cameras"].values())
    assert first["lidar"]["file"] == f"samples/LIDAR_TOP_{shared['timestamp_us']}.bin"
    for name, camera in shared["cameras"].items():
        assert first["cameras"][name]["image"] == f"samples/imgs/{name}.jpg"
        assert (tmp_path / "renamed" / "samples" / "imgs" / f"{name}.jpg").read_bytes() == (
            shared_data / SCENE / camera["image"]).read_bytes()
        assert_same(first["cameras"][name], {k: v for k, v in camera.items() if k != "image"}, name)
    frames = load_sample_frames(tmp_path / "renamed")
    reference = load_sample_frames(shared_data / SCENE)
    for ours, theirs in zip(frames.frames, reference.frames):
        assert np.array_equal(ours.image, theirs.image)
        np.testing.assert_allclose(ours.cam_to_ego, theirs.cam_to_ego, atol=1e-6)

    poses = sample_folder.scene_poses(tables, ("scene-0061",))
    keyframes = poses["scenes"]["scene-0061"]["keyframes"]
    assert poses["scenes"]["scene-0061"]["log"] == LOGFILE
    assert [k["sample_token"] for k in keyframes] == [SCENE_0061.token, token("sample", 1)]
    assert sample_folder.scene_poses(tables, ("scene-0061", "scene-0103")) is None
