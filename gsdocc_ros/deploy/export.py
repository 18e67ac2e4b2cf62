"""Export one frame step (``StepGraph``) to a static-shape ONNX graph, check it, and write its manifest.

torch.onnx's dynamo exporter is the one that handles the fixed-size splat (``index_add_`` -> ScatterND add) and
already folds constants and removes dead nodes with onnxscript's optimiser; the result is then checked with
``onnx.checker`` and full shape inference, and every output's inferred shape must equal the manifest's.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from gsdocc_ros.deploy.manifest import (FORMAT, GRAPH_NAME, DeployError, Manifest, exporter_versions, file_sha256,
                                        spec_dicts, weights_sha256)
from gsdocc_ros.deploy.step_graph import StepGraph, TensorSpec, graph_signature
from gsdocc_ros.model.gsdocc import GSDOCC
from gsdocc_ros.pipeline.choices import DEFAULT_OPSET, EXPORT_PRECISIONS

_TORCH_DTYPES = {"float32": torch.float32, "int64": torch.int64, "bool": torch.bool}


def example_inputs(specs: list[TensorSpec]) -> tuple[torch.Tensor, ...]:
    """Zero tensors of the graph's input shapes (the export traces shapes, never values)."""
    return tuple(torch.zeros(spec.shape, dtype=_TORCH_DTYPES[spec.dtype]) for spec in specs)


class HalfStepGraph(torch.nn.Module):
    """The step graph in float16 with float32 inputs and outputs, so every backend feeds it the same arrays."""

    def __init__(self, model: GSDOCC) -> None:
        super().__init__()
        self.step = StepGraph(copy.deepcopy(model).half())

    def forward(self, images: torch.Tensor, camera_params: torch.Tensor, voxel_index: torch.Tensor,
                history: torch.Tensor, history_ages: torch.Tensor, history_flow: torch.Tensor,
                start_of_sequence: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Same signature as ``StepGraph.forward``; float tensors are cast at the boundary."""
        outputs = self.step(images.half(), camera_params.half(), voxel_index, history.half(), history_ages,
                             history_flow, start_of_sequence)
        return tuple(t.float() if t.is_floating_point() else t for t in outputs)


def check_onnx(path: Path, outputs: list[TensorSpec]) -> None:
    """onnx.checker on the file, then shape inference: each output must infer to its manifest shape."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise DeployError(f"{path}: onnx.checker rejected the graph: {str(error).splitlines()[0]}") from None
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False), strict_mode=True)
    shapes = {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim] for value in inferred.graph.output}
    for spec in outputs:
        if shapes.get(spec.name) != list(spec.shape):
            raise DeployError(f"{path}: output {spec.name} infers to shape {shapes.get(spec.name)}, "
                              f"expected {list(spec.shape)}")


def export_step_graph(model: GSDOCC, out_dir: Path, weights: str, checkpoint_sha256: str | None,
                      precision: str = "fp32", opset: int = DEFAULT_OPSET) -> Manifest:
    """Export ``model`` (merged, eval, standard memory format) into ``out_dir``: graph + manifest.json."""
    if precision not in EXPORT_PRECISIONS:
        raise DeployError(f"precision: expected one of {EXPORT_PRECISIONS}, got {precision!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs, outputs = graph_signature(model.cfg)
    module = StepGraph(model) if precision == "fp32" else HalfStepGraph(model)
    path = out_dir / GRAPH_NAME
    with torch.no_grad():
        torch.onnx.export(module.eval(), example_inputs(inputs), str(path), dynamo=True, opset_version=opset,
                          input_names=[s.name for s in inputs], output_names=[s.name for s in outputs],
                          external_data=False, optimize=True, verbose=False)
    check_onnx(path, outputs)
    manifest = Manifest(format=FORMAT, graph=GRAPH_NAME, graph_sha256=file_sha256(path),
                        input_size=model.cfg.image.input_size, precision=precision, opset=opset, weights=weights,
                        checkpoint_sha256=checkpoint_sha256, weights_sha256=weights_sha256(model),
                        inputs=spec_dicts(inputs), outputs=spec_dicts(outputs),
                        exporter={**exporter_versions(), "exported_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime())})
    manifest.write(out_dir)
    return manifest
