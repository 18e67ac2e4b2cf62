"""`gsdocc eval`: scoring files end to end, two-rank sharding, and the nuScenes side of `eval run`."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from gsdocc_ros.pipeline.frames import CAMERA_NAMES, load_sample_frames
from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX
from gsdocc_ros.pipeline.metrics import OccupancyConfusion
from gsdocc_ros.errors import ToolError
from gsdocc_ros.evaluation import scoring
from gsdocc_ros.io import nuscenes as nuscenes_io
from gsdocc_ros.io.grid_files import read_grid_file
from gsdocc_ros.tools import cli
from test_nuscenes_to_bag import dataset  # noqa: F401  (fixture: a two-keyframe nuScenes dataroot)

CAR, TRUCK, VEGETATION, DRIVEABLE, SIDEWALK = 4, 10, 16, 11, 13
SCENE_0061 = "nuscenes_sample/scene-0061_ca9a282c"
TOKEN_0061 = "ca9a282c9e77460f8360f564131a8af5"


def load_real(shared_data: Path) -> dict[str, np.ndarray]:
    """The real Occ3D labels.npz as arrays."""
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as npz:
        return {key: npz[key] for key in npz.files}


def variant(real: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """Sample ``index`` of a synthetic split: the real grid and its masks rolled along x and mirrored in y."""
    out = {key: np.roll(value, 7 * index, axis=0) for key, value in real.items()}
    return {key: np.ascontiguousarray(value[:, ::-1] if index % 2 else value) for key, value in out.items()}


def corrupt(gt: np.ndarray, index: int) -> np.ndarray:
    """A deterministic, sample-dependent wrong prediction: some cars become trucks, vegetation free, road sidewalk."""
    pred = gt.copy()
    for source, target, stride in ((CAR, TRUCK, index + 2), (VEGETATION, FREE_INDEX, index + 3),
                                   (DRIVEABLE, SIDEWALK, 2 * index + 5)):
        where = np.flatnonzero(gt == source)
        pred.flat[where[::stride]] = target
    return pred


@pytest.fixture
def gt_tree(tmp_path: Path, shared_data: Path) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """GTROOT with two scenes and three samples built from the real file, and the arrays by token."""
    real = load_real(shared_data)
    layout = {"scene-a": ["tok0", "tok1"], "scene-b": ["tok2"]}
    root, samples = tmp_path / "gts", {}
    for scene, tokens in layout.items():
        for token in tokens:
            samples[token] = variant(real, int(token[-1]))
            (root / scene / token).mkdir(parents=True)
            np.savez_compressed(root / scene / token / "labels.npz", **samples[token])
    return root, samples


def write_predictions(folder: Path, predictions: dict[str, np.ndarray], key: str = "semantics") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for token, labels in predictions.items():
        np.savez_compressed(folder / f"{token}.npz", **{key: labels})
    return folder


def score(*args: str | Path) -> int:
    return cli.main(["eval", "score", *map(str, args)])


def test_exact_predictions_score_100(gt_tree, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, samples = gt_tree
    pred = write_predictions(tmp_path / "pred", {t: s["semantics"] for t, s in samples.items()}, key="pred")
    out = tmp_path / "out"
    assert score("--pred", pred, "--gt", root, "--out", out) == 0
    result = json.loads((out / "miou.json").read_text())
    assert result["miou_percent"] == 100.0 and result["tokens_scored"] == ["tok0", "tok1", "tok2"]
    assert result["tokens_missing"] == [] and result["num_samples"] == 3
    assert result["voxels_scored"] == 3 * 43_355
    assert result["classes_in_mean"] == [0, 1, 3, 4, 6, 11, 13, 14, 15, 16]
    assert "rayiou" not in result and result["ray_poses"] is None  # score: RayIoU only when asked for
    with Image.open(out / "miou_per_class.png") as png:
        png.load()
        assert png.size == (1100, 500) and png.format == "PNG"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"wrote {out / 'miou.json'} and {out / 'miou_per_class.png'}")
    assert any(line.startswith("mIoU 100.00 % over 10 of 17 classes") for line in lines)


def test_corrupted_prediction_scores_what_the_counts_say(gt_tree, tmp_path: Path) -> None:
    root, samples = gt_tree
    predictions = {t: s["semantics"].copy() for t, s in samples.items()}
    gt0, mask0 = samples["tok0"]["semantics"], samples["tok0"]["mask_camera"].astype(bool)
    predictions["tok0"][(gt0 == CAR) & mask0] = TRUCK  # every visible car of one sample becomes a truck
    predictions["tok2"][~samples["tok2"]["mask_camera"].astype(bool)] = 0  # changes outside the mask are free
    out = tmp_path / "out"
    assert score("--pred", write_predictions(tmp_path / "pred", predictions), "--gt", root, "--out", out) == 0
    result = json.loads((out / "miou.json").read_text())
    n_car = 1584  # visible cars per sample (rolling and mirroring keep the counts)
    car_iou, truck_iou = 2 * n_car / (3 * n_car), 0.0  # TP 2 n_car, FN n_car; truck: FP n_car, no GT
    expected = (9 * 1.0 + car_iou + truck_iou) / 11  # 10 classes present + truck now predicted
    assert result["miou_percent"] == pytest.approx(100 * expected, abs=1e-12)
    assert result["per_class"][CAR]["iou_percent"] == pytest.approx(100 * car_iou)
    assert result["per_class"][TRUCK]["iou_percent"] == 0.0 and result["per_class"][TRUCK]["in_mean"]
    assert result["confusion_matrix"][CAR][TRUCK] == n_car


def test_missing_prediction_fails_unless_allowed(gt_tree, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, samples = gt_tree
    pred = write_predictions(tmp_path / "pred", {t: samples[t]["semantics"] for t in ("tok0", "tok2")})
    np.savez_compressed(pred / "not-a-sample.npz", semantics=samples["tok0"]["semantics"])
    out = tmp_path / "out"
    assert score("--pred", pred, "--gt", root, "--out", out) == 2
    assert "1 of 3 samples had no prediction: tok1" in capsys.readouterr().err
    assert score("--pred", pred, "--gt", root, "--out", out) == 2  # results exist now: refused without --force
    assert "miou.json exists; pass --force" in capsys.readouterr().err
    assert score("--pred", pred, "--gt", root, "--out", out, "--allow-missing", "--force") == 0
    result = json.loads((out / "miou.json").read_text())
    assert result["tokens_missing"] == ["tok1"] and result["tokens_scored"] == ["tok0", "tok2"]
    assert result["predictions_unmatched"] == ["not-a-sample"] and result["miou_percent"] == 100.0


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((200, 200, 17), np.uint8), "'semantics' has shape (200, 200, 17), expected (200, 200, 16)"),
        (np.zeros((200, 200, 16), np.int32), "'semantics' has dtype int32, expected uint8"),
        (np.full((200, 200, 16), 18, np.uint8), "label 18 outside 0..17"),
    ],
)
def test_bad_prediction_files_are_named(gt_tree, tmp_path: Path, capsys: pytest.CaptureFixture, labels, message) -> None:
    root, samples = gt_tree
    pred = write_predictions(tmp_path / "pred", {t: s["semantics"] for t, s in samples.items()})
    np.savez_compressed(pred / "tok1.npz", semantics=labels)
    assert score("--pred", pred, "--gt", root, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("gsdocc eval: error: ") and str(pred / "tok1.npz") in err and message in err
    assert not (tmp_path / "out" / "miou.json").exists()


def test_inputs_are_checked_before_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert score("--pred", tmp_path / "nope", "--gt", tmp_path) == 2
    assert f"prediction folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    (tmp_path / "pred").mkdir()
    assert score("--pred", tmp_path / "pred", "--gt", tmp_path / "pred") == 2
    assert "no <scene>/<token>/labels.npz files found" in capsys.readouterr().err


# ---- two CPU ranks on loopback give exactly the one-rank result -------------------------------------------

SCENES = [("s0", ["t0", "t1", "t2"]), ("s1", ["t3"]), ("s2", ["t4", "t5"]), ("s3", ["t6"]), ("s4", ["t7", "t8"])]


def synthetic_split(gt_file: str) -> tuple[scoring.Predictor, scoring.GtLoader, list[str]]:
    """Predictor and GT loader over SCENES built from the real file, and the list of (scene, token) predicted."""
    with np.load(gt_file) as npz:
        real = {key: npz[key] for key in npz.files}
    calls: list[str] = []

    def load_gt(scene: str, token: str) -> tuple[np.ndarray, np.ndarray]:
        sample = variant(real, int(token[1:]))
        return sample["semantics"], sample["mask_camera"]

    def predict(scene: str, token: str, start: bool) -> np.ndarray:
        calls.append(f"{scene}/{token}{'*' if start else ''}")
        return corrupt(load_gt(scene, token)[0], int(token[1:]))

    return predict, load_gt, calls


def synthetic_rays() -> scoring.RayScoring:
    """RayIoU over SCENES: keyframe i of a scene 4 m further and turned 3 degrees more; every 60th query direction."""
    from gsdocc_ros.pipeline.ray_metrics import lidar_ray_directions

    def scene_poses(scene: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        tokens = dict(SCENES)[scene]
        poses = np.array([ego_pose(4.0 * i, 3.0 * i) for i in range(len(tokens))])
        return tokens, poses, np.array([MOUNT] * len(tokens))

    return scoring.RayScoring(scene_poses, directions=lidar_ray_directions()[::60])


def rank_worker(rank: int, world_size: int, port: int, gt_file: str, out_dir: str) -> None:
    """One torchrun-like rank: env rendezvous on 127.0.0.1, gloo, evaluate its shard, save the reduced result."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      GLOO_SOCKET_IFNAME="lo")
    got_rank, got_world, device = scoring.init_distributed("cpu")
    assert (got_rank, got_world, device) == (rank, world_size, "cpu") and dist.get_backend() == "gloo"
    predict, load_gt, calls = synthetic_split(gt_file)
    try:
        outcome = scoring.evaluate_distributed(SCENES, predict, load_gt, rank, world_size, device, progress=False,
                                                rays=synthetic_rays())
    finally:
        dist.destroy_process_group()
    np.save(Path(out_dir) / f"matrix{rank}.npy", outcome.confusion.matrix)
    rays = outcome.rays
    np.savez(Path(out_dir) / f"rays{rank}.npz", gt=rays.gt_counts, pred=rays.pred_counts, tp=rays.true_positives,
             meta=[rays.num_rays, rays.num_samples])
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(
        {"calls": calls, "scored": outcome.scored, "num_samples": outcome.confusion.num_samples}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_on_loopback_equal_one_rank(shared_data: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    gt_file = str(shared_data / "occ3d_sample" / "labels.npz")
    predict, load_gt, calls = synthetic_split(gt_file)
    single = scoring.evaluate_distributed(SCENES, predict, load_gt, progress=False, rays=synthetic_rays())
    all_tokens = [t for _, tokens in SCENES for t in tokens]
    assert single.scored == all_tokens and 0.5 < single.confusion.miou() < 1.0
    assert 0.5 < single.rays.rayiou() < 1.0 and single.rays.num_samples == len(all_tokens)

    mp.spawn(rank_worker, args=(2, free_port(), gt_file, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in range(2):
        reduced = OccupancyConfusion()
        reduced.matrix[...] = np.load(tmp_path / f"matrix{r}.npy")
        assert np.array_equal(reduced.matrix, single.confusion.matrix)
        assert reduced.miou() == single.confusion.miou()
        with np.load(tmp_path / f"rays{r}.npz") as rays:
            assert np.array_equal(rays["gt"], single.rays.gt_counts)
            assert np.array_equal(rays["pred"], single.rays.pred_counts)
            assert np.array_equal(rays["tp"], single.rays.true_positives)
            assert rays["meta"].tolist() == [single.rays.num_rays, len(all_tokens)]
        assert ranks[r]["scored"] == all_tokens and ranks[r]["num_samples"] == len(all_tokens)
    # Whole scenes, round-robin, each starting its temporal sequence; together exactly the one-rank calls.
    assert ranks[0]["calls"] == ["s0/t0*", "s0/t1", "s0/t2", "s2/t4*", "s2/t5", "s4/t7*", "s4/t8"]
    assert ranks[1]["calls"] == ["s1/t3*", "s3/t6*"]
    assert sorted(ranks[0]["calls"] + ranks[1]["calls"]) == sorted(calls)


def test_sharding_keeps_scenes_whole() -> None:
    assert scoring.shard_scenes(SCENES, 1, 3) == [SCENES[1], SCENES[4]]
    assert scoring.shard_scenes(SCENES[:1], 1, 2) == []
    with pytest.raises(ValueError, match="rank 2 outside"):
        scoring.shard_scenes(SCENES, 2, 2)


# ---- `eval run`: nuScenes tables -> key-ego camera frames -> runner -> score ----------------------------------

@pytest.fixture
def nuscenes_root(tmp_path: Path, shared_data: Path) -> Path:
    """A devkit-loadable dataroot from the real scene-0061 tables: the tables it lacks are added empty."""
    source = shared_data / SCENE_0061
    root = tmp_path / "nuscenes"
    (root / "v1.0-test").mkdir(parents=True)
    (root / "samples").symlink_to(source / "samples")
    for table in source.glob("v1.0-test/*.json"):
        records = json.loads(table.read_text())
        if table.stem in ("sample", "sample_data"):
            for record in records:
                record.update(prev="", next="")
        if table.stem == "scene":
            for record in records:
                record.update(first_sample_token=TOKEN_0061, last_sample_token=TOKEN_0061)
        (root / "v1.0-test" / table.name).write_text(json.dumps(records))
    for table in ("log", "instance", "sample_annotation"):
        (root / "v1.0-test" / f"{table}.json").write_text("[]")
    (root / "v1.0-test" / "map.json").write_text('[{"token": "m", "log_tokens": [], "category": "", "filename": ""}]')
    return root


def test_keyframe_inputs_follow_the_key_ego_convention(nuscenes_root: Path, shared_data: Path) -> None:
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-test", str(nuscenes_root), verbose=False)
    assert nuscenes_io.scene_samples(nusc, ["scene-0061"]) == [("scene-0061", [TOKEN_0061])]
    inputs = nuscenes_io.keyframe_inputs(nusc, TOKEN_0061)
    # Independent path: calib.json, whose per-camera ego poses were derived from the mmdet3d info file.
    reference = load_sample_frames(shared_data / SCENE_0061)
    assert [f.name for f in inputs.frames] == list(CAMERA_NAMES)
    for got, want in zip(inputs.frames, reference.frames):
        np.testing.assert_allclose(got.cam_to_ego, want.cam_to_ego, atol=1e-6)
        np.testing.assert_allclose(got.intrinsics, want.intrinsics, atol=1e-8)
        assert got.stamp_ns == want.stamp_ns and np.array_equal(got.image, want.image)
    np.testing.assert_allclose(inputs.sample_ego2global, reference.sample_ego2global, atol=1e-4)
    assert inputs.stamp_ns == reference.stamp_ns == 1532402927612460000
    with pytest.raises(ToolError, match="scenes not in v1.0-test: scene-9999"):
        nuscenes_io.scene_samples(nusc, ["scene-9999"])


class FakeRunner:
    """Stands in for OccupancyRunner: records what it is given, returns a fixed grid."""

    instances: list[FakeRunner] = []

    def __init__(self, model: object, config: object, source: str) -> None:
        self.config, self.source, self.events = config, source, []
        FakeRunner.instances.append(self)

    def reset(self, reason: str) -> None:
        self.events.append(("reset", reason))

    def step(self, frames, ego2global, stamp_ns, sequence_id):
        self.events.append(("step", frames, ego2global, stamp_ns, sequence_id))
        return SimpleNamespace(grid=SimpleNamespace(labels=self.labels), start_of_sequence=True, reset_reason="x")


def test_eval_run_wires_nuscenes_the_runner_and_the_score(nuscenes_root: Path, shared_data: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import gsdocc_ros.pipeline.runner as runner_module

    real = load_real(shared_data)
    gts = tmp_path / "gts" / "scene-0061" / TOKEN_0061
    gts.mkdir(parents=True)
    np.savez_compressed(gts / "labels.npz", **real)
    labels = real["semantics"].copy()
    labels[(real["semantics"] == CAR) & (real["mask_camera"] == 1)] = TRUCK
    FakeRunner.labels, FakeRunner.instances = labels, []
    monkeypatch.setattr(runner_module, "OccupancyRunner", FakeRunner)
    monkeypatch.setattr(runner_module, "load_model", lambda *a, **k: (object(), "fake weights"))
    checkpoint = tmp_path / "weights.pt"  # a real torch file, so the argument check passes; load_model is faked
    torch.save({}, checkpoint)
    out = tmp_path / "out"
    code = cli.main(["eval", "run", "--dataroot", str(nuscenes_root), "--version", "v1.0-test", "--gt",
                     str(tmp_path / "gts"), "--checkpoint", str(checkpoint), "--scenes", "scene-0061",
                     "--out", str(out), "--save-predictions"])
    assert code == 0
    result = json.loads((out / "miou.json").read_text())
    assert result["command"] == "run" and result["tokens_scored"] == [TOKEN_0061] and result["world_size"] == 1
    assert result["miou_percent"] == pytest.approx(100 * 9 / 11)
    saved = np.load(out / "predictions" / f"{TOKEN_0061}.npz")
    assert np.array_equal(saved["semantics"], labels) and int(saved["stamp_ns"]) == 1532402927612460000
    info = read_grid_file(out / "predictions" / f"{TOKEN_0061}.npz").info
    assert info.source == "fake weights" and info.class_names == tuple(CLASS_NAMES)
    assert info.stamp_ns == 1532402927612460000
    # RayIoU beside mIoU by default (one keyframe: one origin, its LiDAR mount); the grid saved with its pose.
    assert result["ray_poses"] == "LIDAR_TOP" and result["rayiou"]["num_samples"] == 1
    assert 0 < result["rayiou"]["rayiou_percent"] < 100
    calib = json.loads((shared_data / SCENE_0061 / "calib.json").read_text())
    np.testing.assert_allclose(saved["ego_pose"], calib["cameras"]["CAM_FRONT"]["ego2global"], atol=1e-6)
    np.testing.assert_allclose(saved["lidar_to_ego"], calib["lidar2ego"], atol=1e-6)
    (runner,) = FakeRunner.instances
    assert runner.config.cadence_tolerance_s == 0.2 and runner.source == "fake weights"
    reset, step = runner.events
    assert reset == ("reset", "start of scene-0061")
    _, frames, ego2global, stamp_ns, sequence_id = step
    # The history warp gets the LIDAR_TOP keyframe pose (official), the stamp is CAM_FRONT's.
    np.testing.assert_allclose(ego2global, calib["ego2global"], atol=1e-4)
    assert stamp_ns == 1532402927612460000 and sequence_id == "scene-0061"
    assert [f.image.shape for f in frames] == [(900, 1600, 3)] * 6


def test_eval_run_checks_inputs_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["eval", "run", "--dataroot", str(tmp_path), "--gt", str(tmp_path), "--checkpoint",
                     str(tmp_path / "x.pt")])
    assert code == 2
    assert f"nuScenes tables {tmp_path / 'v1.0-mini'} do not exist" in capsys.readouterr().err


# ---- RayIoU beside mIoU: origins from the prediction files (ROS path) or the nuScenes tables ----------------

MOUNT = np.array([[0.0, 1.0, 0.0, 0.986], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.84], [0.0, 0.0, 0.0, 1.0]])
"""A LIDAR_TOP -> ego mounting like nuScenes' (0.986 m ahead, 1.84 m up, x to the left)."""


def ego_pose(x: float, yaw_deg: float) -> np.ndarray:
    """ego -> map: ``x`` metres along the map's x axis, turned by ``yaw_deg``."""
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    return np.array([[c, -s, 0.0, x], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def test_score_reports_rayiou_from_the_poses_in_the_files(gt_tree, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    root, samples = gt_tree
    pred = tmp_path / "pred"
    pred.mkdir()
    stamps, poses = {"tok0": 2, "tok1": 1, "tok2": 5}, {"tok0": ego_pose(6.0, 10.0), "tok1": ego_pose(0.0, 0.0),
                                                          "tok2": ego_pose(3.0, -5.0)}
    for token, sample in samples.items():
        np.savez_compressed(pred / f"{token}.npz", semantics=corrupt(sample["semantics"], int(token[-1])),
                            stamp_ns=np.int64(stamps[token]), ego_pose=poses[token], lidar_to_ego=MOUNT)
    out = tmp_path / "out"
    assert score("--pred", pred, "--gt", root, "--out", out, "--metric", "miou", "rayiou") == 0
    result = json.loads((out / "miou.json").read_text())
    rays = result["rayiou"]
    assert result["ray_poses"] == "prediction files" and rays["num_samples"] == 3 and 0.5 < result["miou_percent"] < 100
    # Independent: the same counts from the accumulator, origins from the poses in time order (tok1, then tok0).
    from gsdocc_ros.pipeline.ray_metrics import RayIoU, scene_ray_origins

    expected = RayIoU()
    scene_a = (np.array([poses["tok1"], poses["tok0"]]), np.array([MOUNT, MOUNT]))
    for token, origins in (("tok0", scene_ray_origins(*scene_a, 1)), ("tok1", scene_ray_origins(*scene_a, 0)),
                           ("tok2", scene_ray_origins(poses["tok2"][None], MOUNT[None], 0))):
        expected.update(corrupt(samples[token]["semantics"], int(token[-1])), samples[token]["semantics"], origins)
    assert rays == expected.to_dict() | {"metric": rays["metric"]}
    assert 50 < rays["rayiou_percent"] < 100 and len(rays["rayiou_per_threshold_percent"]) == 3
    with Image.open(out / "miou_per_class.png") as png:
        assert png.size == (1100, 1000)  # two panels: mIoU above, RayIoU below
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith(f"RayIoU {rays['rayiou_percent']:.2f} over 3 samples)")
    assert any(line.startswith(f"RayIoU {rays['rayiou_percent']:.2f} % (@1 / 2 / 4 m: ") for line in lines)
    np.savez_compressed(pred / "tok1.npz", semantics=samples["tok1"]["semantics"])  # no pose
    assert score("--pred", pred, "--gt", root, "--out", out, "--metric", "rayiou", "--force") == 2
    assert f"{pred / 'tok1.npz'}: no stamp_ns / ego_pose / lidar_to_ego" in capsys.readouterr().err


def test_ros_path_and_nuscenes_tables_give_the_same_rayiou(dataset: Path, shared_data: Path, tmp_path: Path) -> None:
    """Two keyframes of scene-0061 0.5 s apart (test_nuscenes_to_bag's dataset): each sample gets the other's origin."""
    from gsdocc_ros.pipeline.grid import OccupancyGrid
    from gsdocc_ros.ros.conversions import grid_to_message
    from gsdocc_ros.io.bag_poses import BagPoses
    from gsdocc_ros.io.nuscenes import convert
    from gsdocc_ros.io.sample_tokens import TokenMap
    from gsdocc_ros.ros.grid_recorder import save_message

    real = load_real(shared_data)
    samples = json.loads((dataset / "v1.0-mini" / "sample.json").read_text())[:2]  # scene-0061's two keyframes
    records = json.loads((dataset / "v1.0-mini" / "sample_data.json").read_text())
    cam_front = {r["sample_token"]: r["timestamp"] * 1000 for r in records
                 if "CAM_FRONT/" in r["filename"] and r["is_key_frame"]}
    # ROS path: the bag's tf (map -> base_link at every image stamp, base_link -> LIDAR_TOP), each grid recorded.
    bag = tmp_path / "bag"
    convert(dataset, "v1.0-mini", bag, scenes=["scene-0061"], progress=False)
    poses = BagPoses.from_bag(bag)
    tokens = TokenMap({cam_front[s["token"]]: s["token"] for s in samples})
    pred = tmp_path / "recorded"
    pred.mkdir()
    for index, sample in enumerate(samples):
        gt = variant(real, index)
        (tmp_path / "gts" / "scene-0061" / sample["token"]).mkdir(parents=True)
        np.savez_compressed(tmp_path / "gts" / "scene-0061" / sample["token"] / "labels.npz", **gt)
        grid = OccupancyGrid(labels=corrupt(gt["semantics"], index), stamp_ns=cam_front[sample["token"]])
        with np.load(save_message(grid_to_message(grid, "base_link"), pred, tokens, poses)) as saved:
            assert saved["ego_pose"].shape == saved["lidar_to_ego"].shape == (4, 4)
    results = {}
    for name, extra in (("files", []), ("tables", ["--dataroot", dataset, "--version", "v1.0-mini",
                                                   "--ray-poses", "CAM_FRONT"]),
                        ("official", ["--dataroot", dataset, "--version", "v1.0-mini"])):
        assert score("--pred", pred, "--gt", tmp_path / "gts", "--out", tmp_path / name, "--metric", "miou",
                     "rayiou", *extra) == 0
        results[name] = json.loads((tmp_path / name / "miou.json").read_text())["rayiou"]
    assert results["files"] == results["tables"] and 0 < results["files"]["rayiou_percent"] < 100
    assert results["files"]["rays_scored"] > 2 * 14_040  # two origins per sample
    # LIDAR_TOP poses (SparseOcc's), 35 ms later than the grids' stamps: the other origin moves, the score a little
    official = results["official"]
    assert official["rays_scored"] != results["files"]["rays_scored"]
    assert official["rayiou_percent"] == pytest.approx(results["files"]["rayiou_percent"], abs=0.01)
