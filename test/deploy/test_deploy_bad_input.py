"""Whatever does not fit stops the runner at start-up with one line naming it; never another backend instead."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from deploy_data import REDUCED
from gsdocc_ros.deploy.manifest import GRAPH_NAME, MANIFEST_NAME, DeployError
from gsdocc_ros.deploy.tensorrt import check_engine
from gsdocc_ros.model.config import ImageConfig
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model


def start(model, folder: Path, backend: str = "onnxruntime", device: str = "cpu") -> OccupancyRunner:
    return OccupancyRunner(model, RunnerConfig(device=device, backend=backend, graph_dir=str(folder)))


def error_line(model, folder: Path, **kwargs) -> str:
    with pytest.raises(DeployError) as caught:
        start(model, folder, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def export_copy(reduced_export: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reduced_export, tmp_path / "export"))


def test_graph_that_does_not_match_the_manifest(reduced_model, export_copy: Path) -> None:
    with open(export_copy / GRAPH_NAME, "ab") as graph:
        graph.write(b"\0")
    assert "sha256 differs from the manifest" in error_line(reduced_model, export_copy)


def test_manifest_of_other_weights(export_copy: Path) -> None:
    other = load_model(None, REDUCED, allow_random_weights=True, seed=1)[0]
    assert "exported from other weights" in error_line(other, export_copy)


def test_manifest_of_another_input_size(reduced_model, export_copy: Path) -> None:
    manifest = json.loads((export_copy / MANIFEST_NAME).read_text())
    manifest["input_size"] = [256, 704]
    (export_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert "exported for input size 256x704, the model runs 64x176" in error_line(reduced_model, export_copy)


def test_missing_manifest(reduced_model, export_copy: Path) -> None:
    (export_copy / MANIFEST_NAME).unlink()
    assert f"no {MANIFEST_NAME} in" in error_line(reduced_model, export_copy)


def test_backend_not_installed(reduced_model, reduced_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    message = error_line(reduced_model, reduced_export, backend="openvino")
    assert message.startswith("backend 'openvino' needs the openvino package") and "openvino==2026.4.1" in message


def test_gpu_backend_on_the_cpu(reduced_model, reduced_export: Path) -> None:
    assert "runs on an NVIDIA GPU only" in error_line(reduced_model, reduced_export, backend="tensorrt")


def test_graph_dir_missing(reduced_model) -> None:
    with pytest.raises(DeployError, match="set graph_dir"):
        OccupancyRunner(reduced_model, RunnerConfig(backend="openvino"))


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend: must be one of"):
        RunnerConfig(backend="tflite")


def test_engine_built_for_another_gpu(tmp_path: Path) -> None:
    engine = tmp_path / "gsdocc_step.fp16.engine"
    engine.write_bytes(b"engine")
    note = {"tensorrt": "10.9.0", "gpu": "NVIDIA H100", "compute_capability": "9.0", "graph_sha256": "ab",
            "precision": "fp16"}
    engine.with_suffix(".json").write_text(json.dumps(note))
    check_engine(engine, note)  # the same target passes
    with pytest.raises(DeployError) as caught:
        check_engine(engine, {**note, "gpu": "NVIDIA A100", "compute_capability": "8.0"})
    assert "engine built for gpu 'NVIDIA H100', this machine needs 'NVIDIA A100'" in str(caught.value)
    with pytest.raises(DeployError, match="engine built for tensorrt '10.9.0'"):
        check_engine(engine, {**note, "tensorrt": "10.13.0"})


def test_bad_input_size_is_caught_before_the_weights(reduced_export: Path) -> None:
    """A model at another input size meets the reduced export: the size, not the weights, is named."""
    model = load_model(None, replace(REDUCED, image=ImageConfig((128, 352))), allow_random_weights=True)[0]
    assert "exported for input size 64x176" in error_line(model, reduced_export)
