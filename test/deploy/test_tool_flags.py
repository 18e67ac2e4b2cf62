"""`--backend` on bench, eval run and demo: what they refuse before loading anything, as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gsdocc_ros.tools.cli import main


def test_bench_graph_backend_needs_a_graph_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--backend", "openvino", "--json", str(tmp_path / "out.json")]) == 2
    assert capsys.readouterr().err.strip() == ("gsdocc bench: error: --backend other than torch needs --graph-dir "
                                               "(a `gsdocc export` folder)")


def test_bench_refuses_an_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bench", "--backend", "onnxruntime,tflite"])
    assert caught.value.code == 2
    assert "unknown backend 'tflite'" in capsys.readouterr().err


def test_demo_graph_backend_needs_a_graph_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--backend", "onnxruntime", "--out", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err.strip().startswith("gsdocc demo: error: --backend onnxruntime needs --graph-dir")


def test_eval_run_offers_the_backends(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "run", "--help"])
    out = capsys.readouterr().out
    assert "--backend {torch,onnxruntime,onnxruntime-tensorrt,openvino,tensorrt}" in out and "--graph-dir" in out
