"""`gsdocc export`: a checked static graph of standard operators, its manifest, and the full-size graph's parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from deploy_data import REDUCED, sequence
from gsdocc_ros.deploy.export import export_step_graph
from gsdocc_ros.deploy.manifest import GRAPH_NAME, MANIFEST_NAME, file_sha256, weights_sha256
from gsdocc_ros.deploy.step_graph import graph_signature
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.pipeline.runner import OccupancyRunner, RunnerConfig, load_model
from gsdocc_ros.tools.cli import main


def test_graph_is_static_standard_and_matches_its_manifest(reduced_model, reduced_export: Path) -> None:
    graph = onnx.load(str(reduced_export / GRAPH_NAME))
    onnx.checker.check_model(graph, full_check=True)
    ops = {(node.domain, node.op_type) for node in graph.graph.node}
    assert {domain for domain, _ in ops} <= {"", "ai.onnx"}  # no custom op
    assert not {op for _, op in ops} & {"If", "Loop", "Scan"}  # no control flow left
    assert ("", "ScatterND") in ops and ("", "GridSample") in ops and ("", "ArgMax") in ops
    assert graph.opset_import[0].version == 18
    manifest = json.loads((reduced_export / MANIFEST_NAME).read_text())
    inputs, outputs = graph_signature(REDUCED)
    for declared, values in ((inputs, graph.graph.input), (outputs, graph.graph.output)):
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
        assert shapes == {spec.name: list(spec.shape) for spec in declared}  # static, as declared
    assert [entry["name"] for entry in manifest["inputs"]] == [spec.name for spec in inputs]
    assert manifest["graph_sha256"] == file_sha256(reduced_export / GRAPH_NAME)
    assert manifest["weights_sha256"] == weights_sha256(reduced_model)
    assert manifest["opset"] == 18 and manifest["precision"] == "fp32" and manifest["checkpoint_sha256"] is None
    assert manifest["exporter"]["torch"] == torch.__version__ and manifest["exporter"]["onnx"] == onnx.__version__


def test_fp16_export_is_checked(reduced_model, tmp_path: Path) -> None:
    manifest = export_step_graph(reduced_model, tmp_path, "random seed 0", None, precision="fp16")
    graph = onnx.load(str(tmp_path / GRAPH_NAME))
    weights = [t for t in graph.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)]
    assert manifest.precision == "fp16"
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in weights) > 0.9 * len(weights)
    assert all(v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 for v in graph.graph.input)


def test_export_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / MANIFEST_NAME).write_text("{}")
    assert main(["export", "--random-weights", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"gsdocc export: error: {tmp_path} already holds an export; pass " \
                                              "--force to overwrite it"


@pytest.mark.slow
def test_full_size_export_runs_like_torch(tmp_path: Path, shared_data: Path, capsys) -> None:
    """256x704 through the command, then one real frame (scene-0061) on onnxruntime against the torch runner."""
    assert main(["export", "--random-weights", "--out", str(tmp_path), "--input-size", "256x704"]) == 0
    assert "checked graph" in capsys.readouterr().out
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["input_size"] == [256, 704] and manifest["inputs"][0]["shape"] == [1, 6, 3, 256, 704]
    model = load_model(None, ModelConfig(), allow_random_weights=True)[0]
    step = sequence(shared_data / "nuscenes_sample" / "scene-0061_ca9a282c")[0]
    logits = []
    hook = model.occupancy_head.register_forward_hook(lambda module, args, out: logits.append(out.numpy().copy()))
    reference = OccupancyRunner(model).step(step.frames, step.ego2global, step.stamp_ns)
    hook.remove()
    runner = OccupancyRunner(model, RunnerConfig(backend="onnxruntime", graph_dir=str(tmp_path)))
    result = runner.step(step.frames, step.ego2global, step.stamp_ns)
    assert np.abs(runner.graph.last_outputs["logits"] - logits[0]).max() < 1e-4
    assert (result.grid.labels == reference.grid.labels).mean() >= 0.9999
