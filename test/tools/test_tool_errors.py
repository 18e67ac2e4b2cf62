"""Tool errors the per-tool tests leave out: each is one line on stderr, exit code 2, and no output left behind;
and file names taken from outside data stay inside the output folder.

Covered elsewhere: missing or truncated bags (test_play), missing dataroot / wrong version / missing files
(test_nuscenes_to_bag), missing prediction and ground-truth folders (test_eval), refused overwrites (each tool),
malformed grid files (test/ros/test_bad_input.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gsdocc_ros.tools import cli
from gsdocc_ros.errors import ToolError
from gsdocc_ros.io.sample_tokens import TokenMap, grid_file_name

from test_nuscenes_to_bag import VERSION, dataset  # noqa: F401 - the fixture: a small real v1.0-mini dataroot


@pytest.mark.parametrize("table", ["scene", "sample_data", "calibrated_sensor"])
def test_nuscenes_to_bag_refuses_a_truncated_table(dataset: Path, tmp_path: Path,  # noqa: F811
                                                     capsys: pytest.CaptureFixture[str], table: str) -> None:
    path = dataset / VERSION / f"{table}.json"
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    out = tmp_path / "out"
    out.mkdir()
    code = cli.main(["nuscenes-to-bag", "--dataroot", str(dataset), "--version", VERSION, "--out", str(out / "bag")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"gsdocc nuscenes-to-bag: error: cannot load nuScenes {VERSION} from {dataset}: not "
                             f"valid JSON: {path} (")
    assert list(out.iterdir()) == []  # no bag, no staging folder


def _nuscenes_to_bag_error(dataset: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:  # noqa: F811
    """The one error line of a failed `gsdocc nuscenes-to-bag` of ``dataset`` to ``out`` (besides progress bars)."""
    code = cli.main(["nuscenes-to-bag", "--dataroot", str(dataset), "--version", VERSION, "--out", str(out)])
    captured = capsys.readouterr()
    err = [line for line in captured.err.strip().splitlines() if not line.startswith("planning:")]
    assert code == 2 and len(err) == 1 and captured.out == "", captured
    return err[0]


@pytest.mark.parametrize("table", ["sample", "log"])
def test_nuscenes_to_bag_names_a_missing_table(dataset: Path, tmp_path: Path,  # noqa: F811
                                               capsys: pytest.CaptureFixture[str], table: str) -> None:
    (dataset / VERSION / f"{table}.json").unlink()
    err = _nuscenes_to_bag_error(dataset, tmp_path / "bag", capsys)
    assert err.startswith(f"gsdocc nuscenes-to-bag: error: nuScenes table {dataset / VERSION / table}.json is "
                          "missing; a nuScenes dataroot holds <dataroot>/<version>/<table>.json for each of "), err
    assert "sample_data" in err and "Errno" not in err and not (tmp_path / "bag").exists()


def test_nuscenes_to_bag_names_a_missing_image(dataset: Path, tmp_path: Path,  # noqa: F811
                                               capsys: pytest.CaptureFixture[str]) -> None:
    image = next((dataset / "samples" / "CAM_FRONT").iterdir())
    image.unlink()
    err = _nuscenes_to_bag_error(dataset, tmp_path / "bag", capsys)
    assert err.startswith("gsdocc nuscenes-to-bag: error: ") and f"missing, e.g. {image};" in err, err
    assert "copy samples/ and sweeps/ from the same nuScenes download" in err
    assert list(tmp_path.glob("*bag*")) == []


def test_nuscenes_to_bag_refuses_an_out_inside_a_file(dataset: Path, tmp_path: Path,  # noqa: F811
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_file").write_text("x")
    err = _nuscenes_to_bag_error(dataset, tmp_path / "a_file" / "bag", capsys)
    assert err == (f"gsdocc nuscenes-to-bag: error: --out {tmp_path / 'a_file' / 'bag'}: {tmp_path / 'a_file'} is a "
                   "file, not a folder; choose another --out")


def test_render_refuses_a_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grid.png"
    assert cli.main(["render", str(tmp_path / "labels.npz"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"gsdocc render: error: no such grid file: {tmp_path / 'labels.npz'}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("token", ["../outside", "nested/name", "/tmp/absolute"])
def test_record_file_names_from_a_bag_stay_inside_the_output_folder(tmp_path: Path, token: str) -> None:
    """Sample tokens come from a bag (outside data) and name the files `gsdocc record` writes."""
    out = tmp_path / "out"
    try:
        name = grid_file_name(1000, TokenMap({1000: token}))
    except ToolError as error:
        assert repr(token) in str(error)
        return
    assert (out / name).resolve().parent == out.resolve(), f"token {token!r} writes to {out / name}"
