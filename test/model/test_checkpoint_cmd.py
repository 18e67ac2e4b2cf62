"""`gsdocc checkpoint check|convert` through the real CLI entry point."""

from __future__ import annotations

import random
import zipfile

import pytest
import torch

from gsdocc_ros.tools.cli import main


@pytest.fixture
def official_file(synthetic_state, tmp_path):
    """A synthetic official checkpoint in the mmcv layout with DDP's ``module.`` prefix."""
    path = tmp_path / "gsdocc_official.pth"
    torch.save({"meta": {"mmcv_version": "1.5.2"}, "state_dict": {"module." + k: v for k, v in synthetic_state.items()},
                "optimizer": {}}, path)
    return path


def test_check_reports_a_matching_file(official_file, capsys) -> None:
    assert main(["checkpoint", "check", str(official_file)]) == 0
    out = capsys.readouterr().out
    for line in ("layout: mmcv", "prefix stripped: module.", "form: training", "keys: 629, values: 115,092,841",
                 "result: matches the model key for key"):
        assert line in out


def test_check_lists_what_does_not_match(synthetic_state, tmp_path, capsys) -> None:
    state = dict(synthetic_state)
    del state["img_backbone.layer1.0.bn1.running_mean"]
    state["img_neck.lateral_convs.1.conv.weight"] = torch.zeros(512, 1024, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    assert main(["checkpoint", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert "missing from the file (1):\n  img_backbone.layer1.0.bn1.running_mean" in captured.out
    assert "img_neck.lateral_convs.1.conv.weight: model [512, 2048, 1, 1], file [512, 1024, 1, 1]" in captured.out
    assert captured.err.startswith("gsdocc checkpoint: error:") and "1 missing" in captured.err


def test_check_refuses_an_untrusted_pickle(tmp_path, capsys) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": {}, "meta": {"hook": tmp_path}}, path)  # a pathlib object is outside the allow-list
    assert main(["checkpoint", "check", str(path)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err


def test_convert_writes_own_format_and_refuses_to_overwrite(official_file, tmp_path, capsys) -> None:
    out_path = tmp_path / "gsdocc.pt"
    assert main(["checkpoint", "convert", str(official_file), str(out_path)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"wrote {out_path} (629 keys")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gsdocc.pt", "gsdocc_official.pth"]
    assert main(["checkpoint", "check", str(out_path)]) == 0
    assert "layout: gsdocc_ros" in capsys.readouterr().out
    assert main(["checkpoint", "convert", str(official_file), str(out_path)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["checkpoint", "convert", str(official_file), str(out_path), "--force"]) == 0


def test_convert_writes_nothing_for_a_mismatching_file(synthetic_state, tmp_path, capsys) -> None:
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in synthetic_state.items() if not k.startswith("depth_net.")}, path)
    out_path = tmp_path / "out.pt"
    assert main(["checkpoint", "convert", str(path), str(out_path)]) == 2
    assert "nothing written" in capsys.readouterr().err
    assert not out_path.exists()


def _bad_checkpoint(kind: str, tmp_path, official_file):
    """A real file (or folder) of the named kind that is not a usable checkpoint."""
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.touch()
    elif kind == "directory":
        path = tmp_path / "weights"
        path.mkdir()
        (path / "gsdocc.pth").write_bytes(official_file.read_bytes())
    elif kind == "random":
        path.write_bytes(bytes(random.Random(0).randrange(1, 128) for _ in range(4096)))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes/readme.txt", "not weights")
    else:  # a real checkpoint cut in half: its zip directory, at the end, is gone
        path.write_bytes(official_file.read_bytes()[:official_file.stat().st_size // 2])
    return path


@pytest.mark.parametrize("kind, expected", [
    ("empty", "is empty (0 bytes); give the .pth file written by torch.save"),
    ("directory", "is a directory (it holds gsdocc.pth); expected the .pth file itself"),
    ("random", "is not a torch checkpoint: neither a zip archive nor a pickle (4,096 bytes, starting b'"),
    ("zip", "is a zip archive but not a torch checkpoint (no data.pkl among its 1 entries, e.g. notes/readme.txt)"),
    ("truncated", "is a damaged or truncated zip archive ("),
])
def test_check_says_what_the_file_is(kind, expected, official_file, tmp_path, capsys) -> None:
    """One line naming the file, what it is and the fix; trust_pickle is never suggested for these."""
    path = _bad_checkpoint(kind, tmp_path, official_file)
    for verb in (["checkpoint", "check", str(path)], ["checkpoint", "convert", str(path), str(tmp_path / "o.pt")]):
        assert main(verb) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert captured.out == "" and len(err) == 1, err
        assert err[0].startswith(f"gsdocc checkpoint: error: checkpoint {path} {expected}"), err[0]
        assert "trust" not in err[0]
    assert not (tmp_path / "o.pt").exists()
