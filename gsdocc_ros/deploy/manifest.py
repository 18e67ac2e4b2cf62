"""The JSON manifest written beside an exported graph, and the start-up checks that a graph fits its model.

The manifest names every input and output (shape, dtype, meaning), the weights the graph was exported from
(the checkpoint file's sha256 and a fingerprint of the loaded weights, which also covers seeded random
weights), the graph file's own sha256, the opset and the exporter's versions. A backend refuses to start,
with one line naming what differs, when the graph file, the weights or the input size do not match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.deploy.step_graph import TensorSpec, graph_signature

MANIFEST_NAME = "manifest.json"
GRAPH_NAME = "gsdocc_step.onnx"
FORMAT = "gsdocc-step-graph/1"


class DeployError(ValueError):
    """A graph, manifest, engine or runtime that cannot be used: one line saying what is wrong."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(model: nn.Module) -> str:
    """Hex sha256 over the state dict's names and float32 values in standard layout (memory format ignored)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What ``gsdocc export`` wrote: the graph's interface and where it came from."""

    format: str
    graph: str
    """File name of the ONNX graph, beside the manifest."""
    graph_sha256: str
    input_size: tuple[int, int]
    """(H, W) network input."""
    precision: str
    """fp32, or fp16 weights and activations (inputs and outputs stay float32)."""
    opset: int
    weights: str
    """How the weights were made: the checkpoint file name, or the random seed."""
    checkpoint_sha256: str | None
    """sha256 of the checkpoint file; None for seeded random weights."""
    weights_sha256: str
    """``weights_sha256`` of the loaded (merged) model."""
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    exporter: dict[str, str]

    def write(self, folder: Path) -> Path:
        """Write ``manifest.json`` into ``folder``; returns its path."""
        path = folder / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def spec_dicts(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    """TensorSpecs as manifest entries."""
    return [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "meaning": s.meaning} for s in specs]


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an export folder, or DeployError naming what is missing or malformed."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise DeployError(f"no {MANIFEST_NAME} in {folder} (write one with `gsdocc export`)")
    try:
        data = json.loads(path.read_text())
        data["input_size"] = tuple(data["input_size"])
        manifest = Manifest(**data)
    except (ValueError, TypeError, KeyError) as error:
        raise DeployError(f"{path}: not a gsdocc export manifest ({error})") from None
    if manifest.format != FORMAT:
        raise DeployError(f"{path}: format {manifest.format!r}, expected {FORMAT!r}")
    return manifest


def check_graph(folder: Path, model: nn.Module, cfg: ModelConfig) -> tuple[Manifest, Path]:
    """The manifest and graph path of ``folder`` after checking they belong to ``model`` at ``cfg``'s size.

    Checks, in order: the manifest, the graph file against its sha256, the input size and interface, the
    weights fingerprint. Raises DeployError with one line on the first mismatch.
    """
    manifest = read_manifest(folder)
    graph = Path(folder) / manifest.graph
    if not graph.is_file():
        raise DeployError(f"{graph}: graph file named by the manifest is missing")
    if file_sha256(graph) != manifest.graph_sha256:
        raise DeployError(f"{graph}: sha256 differs from the manifest's; the graph does not belong to this manifest")
    if tuple(manifest.input_size) != tuple(cfg.image.input_size):
        raise DeployError(f"{folder}: exported for input size {manifest.input_size[0]}x{manifest.input_size[1]}, "
                          f"the model runs {cfg.image.input_size[0]}x{cfg.image.input_size[1]}")
    inputs, outputs = graph_signature(cfg)
    if manifest.inputs != spec_dicts(inputs) or manifest.outputs != spec_dicts(outputs):
        raise DeployError(f"{folder}: the manifest's inputs/outputs differ from this model config's step graph")
    weights = weights_sha256(model)
    if manifest.weights_sha256 != weights:
        raise DeployError(f"{folder}: exported from other weights ({manifest.weights}, weights sha256 "
                          f"{manifest.weights_sha256[:12]}), the model's are {weights[:12]}")
    return manifest, graph


def exporter_versions() -> dict[str, str]:
    """Versions of the packages that wrote the graph."""
    import onnx
    import onnxscript

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__}
