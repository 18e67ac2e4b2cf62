"""An argument error of every `gsdocc` verb is reported before torch, rclpy or matplotlib is imported.

Each case runs `gsdocc_ros.tools.cli.main` in a fresh interpreter on real files made in tmp_path, then lists the
heavy modules it loaded: checking the arguments first is what keeps a mistyped command quick. `gsdocc node` is left
out: all its arguments are ROS arguments, which only rclpy parses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "rclpy", "matplotlib", "onnx")
PROBE = ("import contextlib, io, json, sys\n"
         "from gsdocc_ros.tools.cli import main\n"
         "err = io.StringIO()\n"
         "with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
         "    code = main(sys.argv[1:])\n"
         "print(json.dumps({'code': code, 'err': err.getvalue(), 'modules': sorted(sys.modules)}))")

# (verb arguments, with {t} for tmp_path; a fragment of the expected error line)
CASES = [
    ("checkpoint check {t}/empty.pth", "is empty (0 bytes)"),
    ("checkpoint convert {t}/folder {t}/out.pt", "is a directory"),
    ("eval score --pred {t}/none --gt {t}/folder", "prediction folder {t}/none does not exist"),
    ("eval run --dataroot {t}/folder --checkpoint {t}/empty.pth --gt {t}/folder",
     "nuScenes tables {t}/folder/v1.0-mini do not exist"),
    ("bench --checkpoint {t}/bytes.bin", "neither a zip archive nor a pickle"),
    ("record --out {t}/bytes.bin", "exists and is not a folder"),
    ("nuscenes-to-bag --dataroot {t}/none --out {t}/bag", "--dataroot {t}/none is not a directory"),
    ("play {t}/folder", "is not a ROS 2 bag directory"),
    ("render {t}/none.npz --out {t}/grid.png", "no such grid file"),
    ("demo --bag {t}/bytes.bin --out {t}/demo", "is not a ROS 2 bag directory"),
    ("demo --checkpoint {t}/empty.pth --out {t}/demo", "is empty (0 bytes)"),
    ("export --checkpoint {t}/folder --out {t}/export", "is a directory"),
]


@pytest.mark.parametrize("args, expected", CASES, ids=[args.split(" {")[0] for args, _ in CASES])
def test_argument_error_comes_before_heavy_imports(args: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "empty.pth").touch()
    (tmp_path / "folder").mkdir()
    (tmp_path / "bytes.bin").write_bytes(bytes(range(1, 65)))
    argv = args.format(t=tmp_path).split()
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    err = result["err"].strip().splitlines()
    assert result["code"] == 2 and len(err) == 1, result["err"]
    assert err[0].startswith(f"gsdocc {argv[0]}: error: ") and expected.format(t=tmp_path) in err[0], err[0]
    heavy = sorted({name.split(".")[0] for name in result["modules"]} & set(HEAVY))
    assert heavy == [], f"`gsdocc {' '.join(argv)}` imported {heavy} before refusing its arguments"
    assert not (tmp_path / "demo").exists() and not (tmp_path / "export").exists()
