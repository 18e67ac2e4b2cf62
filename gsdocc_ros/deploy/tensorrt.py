"""TensorRT: an engine built from the exported ONNX with the TensorRT Python API, and a backend that runs it.

The engine is built on the target GPU (fp32 or fp16, with a timing cache kept beside it so rebuilds are fast)
and carries a JSON note of what it was built for: TensorRT version, GPU name and compute capability, the
graph's sha256 and the precision. Loading refuses an engine whose note differs from here, with one line, since
TensorRT engines are tied to one GPU model and one TensorRT version. Input and output buffers are torch CUDA
tensors made once; a run copies the host inputs up, enqueues the engine, and copies the outputs back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gsdocc_ros.deploy.backends import import_runtime
from gsdocc_ros.deploy.manifest import DeployError, file_sha256

WORKSPACE_BYTES = 4 << 30


def engine_path(graph: Path, fp16: bool) -> Path:
    """Where the engine for ``graph`` at a precision lives: beside the graph."""
    return graph.with_name(f"{graph.stem}.{'fp16' if fp16 else 'fp32'}.engine")


def target_note(trt, graph: Path, fp16: bool) -> dict[str, object]:  # noqa: ANN001 (the tensorrt module)
    """What an engine built here, now, for ``graph`` would be built for."""
    import torch

    properties = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"tensorrt": trt.__version__, "gpu": properties.name,
            "compute_capability": f"{properties.major}.{properties.minor}", "graph_sha256": file_sha256(graph),
            "precision": "fp16" if fp16 else "fp32"}


def build_engine(graph: Path, fp16: bool = False, workspace_bytes: int = WORKSPACE_BYTES) -> Path:
    """Build and serialise an engine for ``graph`` on this GPU; returns its path (note and timing cache beside)."""
    trt = import_runtime("tensorrt", "tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch, the only mode of TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployError(f"{graph}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache_path = graph.with_name("tensorrt_timing.cache")
    timing_cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeployError(f"{graph}: TensorRT could not build an engine (see the TensorRT log above)")
    path = engine_path(graph, fp16)
    path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    path.with_suffix(".json").write_text(json.dumps(target_note(trt, graph, fp16), indent=2) + "\n")
    return path


def check_engine(path: Path, expected: dict[str, object]) -> None:
    """Raise DeployError naming the first field of the engine's note that differs from ``expected``."""
    note_path = path.with_suffix(".json")
    if not note_path.is_file():
        raise DeployError(f"{path}: no build note {note_path.name} beside the engine; rebuild it with "
                          "`gsdocc export --tensorrt`")
    note = json.loads(note_path.read_text())
    for key, value in expected.items():
        if note.get(key) != value:
            raise DeployError(f"{path}: engine built for {key} {note.get(key)!r}, this machine needs {value!r}; "
                              "rebuild it here with `gsdocc export --tensorrt`")


class TensorRtBackend:
    """Runs the engine for a graph on one CUDA device; builds it first when none exists beside the graph."""

    name = "tensorrt"

    def __init__(self, graph: Path, device: str = "cuda", fp16: bool = False) -> None:
        trt = import_runtime("tensorrt", "tensorrt")
        import torch

        if not torch.cuda.is_available():
            raise DeployError("backend 'tensorrt' needs a CUDA device, and torch sees none")
        self.device = torch.device(device)
        torch.cuda.set_device(self.device)
        path = engine_path(graph, fp16)
        if not path.is_file():
            build_engine(graph, fp16)
        check_engine(path, target_note(trt, graph, fp16))
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise DeployError(f"{path}: TensorRT {trt.__version__} could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        self.buffers: dict[str, torch.Tensor] = {}
        self.outputs: list[str] = []
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            buffer = torch.empty(tuple(self.engine.get_tensor_shape(name)), dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, buffer.data_ptr())
            self.buffers[name] = buffer
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.outputs.append(name)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs up, enqueue the engine, copy outputs down, on the backend's stream."""
        import torch

        with torch.cuda.stream(self.stream):
            for name, array in inputs.items():
                self.buffers[name].copy_(torch.from_numpy(np.ascontiguousarray(array)), non_blocking=False)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise DeployError("TensorRT: enqueue of the engine failed")
            outputs = {name: self.buffers[name].cpu().numpy() for name in self.outputs}
        self.stream.synchronize()
        return outputs
