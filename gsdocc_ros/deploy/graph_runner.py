"""The runner's network call when a runtime other than torch runs the exported graph.

``GraphStep`` checks the export folder against the loaded model (manifest, graph sha256, weights, input size),
opens the backend, and then per frame turns the runner's decisions (start, commit, elapsed steps, ego motion)
into graph inputs, runs the graph, and commits its next history into the runner's ``TemporalCache``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsdocc_ros.deploy.backends import CUDA_ONLY, GraphBackend, open_backend
from gsdocc_ros.deploy.manifest import DeployError, check_graph
from gsdocc_ros.deploy.step_graph import GraphInputs
from gsdocc_ros.model.gsdocc import GSDOCC
from gsdocc_ros.model.inputs import ModelInputs
from gsdocc_ros.model.temporal import TemporalCache


class GraphStep:
    """One frame through backend ``name`` running the graph in ``graph_dir``; same cache semantics as torch."""

    def __init__(self, model: GSDOCC, name: str, graph_dir: str | Path, device: str = "cpu", threads: int = 1,
                 fp16: bool = False) -> None:
        if not graph_dir:
            raise DeployError(f"backend {name!r} runs an exported graph: set graph_dir to a `gsdocc export` folder")
        self.manifest, graph = check_graph(Path(graph_dir), model, model.cfg)
        if fp16 != (self.manifest.precision == "fp16") and name not in CUDA_ONLY:  # TensorRT builds fp16 from fp32
            raise DeployError(f"{graph_dir}: graph exported in {self.manifest.precision}, "
                              f"the runner asks for {'fp16' if fp16 else 'fp32'}")
        self.backend: GraphBackend = open_backend(name, graph, device, threads, fp16)
        self.inputs = GraphInputs(model)
        self.last_outputs: dict[str, np.ndarray] = {}

    def __call__(self, inputs: ModelInputs, cache: TemporalCache, curr_to_prev_ego: Tensor, start: bool,
                 commit: bool, elapsed_steps: float) -> tuple[Tensor, Tensor]:
        """labels uint8 [1,X,Y,Z] and confidence [1,X,Y,Z] on the CPU; advances ``cache`` when ``commit``."""
        start = start or cache.is_empty
        outputs = self.backend.run(self.inputs(inputs, cache, curr_to_prev_ego, start, elapsed_steps))
        if commit:
            self.inputs.commit(outputs, cache, inputs.bda, start)
        self.last_outputs = outputs
        return torch.from_numpy(outputs["labels"]), torch.from_numpy(outputs["confidence"])
