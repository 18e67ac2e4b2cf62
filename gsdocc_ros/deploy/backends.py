"""Runtimes for the exported step graph behind one interface: ``run(inputs) -> outputs``, named numpy arrays.

A backend only runs the graph: the inputs (history included) come from ``GraphInputs`` and the runner decides
what to do with the outputs, so the temporal cache behaves the same on every runtime. Each constructor checks
what it needs (package, device, execution provider, engine) and raises ``DeployError`` with one line rather
than run on something other than what was asked. Packages are imported only by the backend that needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from gsdocc_ros.deploy.manifest import DeployError
from gsdocc_ros.pipeline.choices import BACKENDS, GRAPH_BACKENDS

CUDA_ONLY = ("onnxruntime-tensorrt", "tensorrt")
PIN = {"onnxruntime": "onnxruntime==1.32.0 (onnxruntime-gpu for CUDA)", "openvino": "openvino==2026.4.1",
       "tensorrt": "tensorrt (NVIDIA's wheel matching the CUDA driver)"}


class GraphBackend(Protocol):
    """What the runner needs from a runtime."""

    name: str

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph once; the outputs are arrays the caller owns."""


def import_runtime(package: str, backend: str):  # noqa: ANN201 (a module)
    """Import ``package`` or raise DeployError naming the backend and what to install."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise DeployError(f"backend {backend!r} needs the {package} package, which is not importable "
                          f"({error}); install {PIN[package]}") from None


def serial_scatter(graph: Path) -> bytes:
    """The graph with each ScatterND(add) along rows rewritten as the equivalent ScatterElements(add).

    ONNX Runtime's CPU ScatterND adds duplicate indices from several threads without synchronisation (wrong sums,
    measured: benchmarks/README.md); its ScatterElements adds them in order. The splat scatters rows: ScatterND
    data [V,C], indices [K,1], updates [K,C] equals ScatterElements(data, indices expanded to [K,C], updates,
    axis 0). The file on disk (checked against the manifest) is left as it is; the session gets the rewrite.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(graph))
    nodes = []
    for node in model.graph.node:
        reduction = next((attribute.s for attribute in node.attribute if attribute.name == "reduction"), b"none")
        if node.op_type != "ScatterND" or reduction != b"add":
            nodes.append(node)
            continue
        data, indices, updates = node.input
        shape, expanded = f"{node.name}/updates_shape", f"{node.name}/indices_expanded"
        nodes += [helper.make_node("Shape", [updates], [shape]),
                  helper.make_node("Expand", [indices, shape], [expanded]),  # [K,1] -> [K,C]
                  helper.make_node("ScatterElements", [data, expanded, updates], list(node.output), axis=0,
                                   reduction="add", name=f"{node.name}/elements")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString()


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU, CUDA or TensorRT execution provider, ``threads`` intra-op threads on the CPU.

    On the CPU the splat's ScatterND runs as ScatterElements (``serial_scatter``), the one form ONNX Runtime
    sums correctly with several threads.
    """

    def __init__(self, graph: Path, device: str = "cpu", threads: int = 1, tensorrt: bool = False,
                 cache_dir: Path | None = None, fp16: bool = False) -> None:
        ort = import_runtime("onnxruntime", "onnxruntime-tensorrt" if tensorrt else "onnxruntime")
        self.name = "onnxruntime-tensorrt" if tensorrt else "onnxruntime"
        device_id = int(device.split(":")[1]) if ":" in device else 0
        if tensorrt:
            trt_options = {"device_id": device_id, "trt_fp16_enable": fp16, "trt_engine_cache_enable": True,
                           "trt_engine_cache_path": str(cache_dir or graph.parent), "trt_timing_cache_enable": True}
            providers = [("TensorrtExecutionProvider", trt_options),
                         ("CUDAExecutionProvider", {"device_id": device_id})]
        elif device.startswith("cuda"):
            providers = [("CUDAExecutionProvider", {"device_id": device_id})]
        else:
            providers = ["CPUExecutionProvider"]
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if wanted not in ort.get_available_providers():
            raise DeployError(f"backend {self.name!r}: onnxruntime {ort.__version__} has no {wanted} here "
                              f"(available: {', '.join(ort.get_available_providers())})")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        source = serial_scatter(graph) if wanted == "CPUExecutionProvider" else str(graph)
        self.session = ort.InferenceSession(source, options, providers=providers)
        if self.session.get_providers()[0] != wanted:  # ORT falls back to the CPU when a provider fails to load
            raise DeployError(f"backend {self.name!r}: onnxruntime did not start {wanted} "
                              f"(session runs on {self.session.get_providers()[0]})")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One session run; ORT returns fresh arrays."""
        names = [output.name for output in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, inputs)))


class OpenVinoBackend:
    """OpenVINO on the CPU, reading the ONNX graph directly, inference precision pinned to f32.

    Without the pin OpenVINO picks bf16 on CPUs that support it, which would break fp32 parity.
    """

    def __init__(self, graph: Path, threads: int = 0) -> None:
        ov = import_runtime("openvino", "openvino")
        self.name = "openvino"
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(graph)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = [output.get_any_name() for output in self.compiled.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous inference; outputs copied out of OpenVINO's reused buffers."""
        self.request.infer(inputs)
        return {name: np.array(self.request.get_tensor(name).data, copy=True) for name in self.names}


def open_backend(name: str, graph: Path, device: str = "cpu", threads: int = 1, fp16: bool = False
                 ) -> GraphBackend:
    """The runtime ``name`` for the checked graph file ``graph``; DeployError when it cannot run here."""
    if name not in GRAPH_BACKENDS:
        raise DeployError(f"backend: expected one of {BACKENDS}, got {name!r}")
    if name in CUDA_ONLY and not device.startswith("cuda"):
        raise DeployError(f"backend {name!r} runs on an NVIDIA GPU only; set device to cuda")
    if name == "openvino":
        if device != "cpu":
            raise DeployError(f"backend 'openvino' runs on the CPU here; device {device!r} was asked")
        return OpenVinoBackend(graph, threads)
    if name == "tensorrt":
        from gsdocc_ros.deploy.tensorrt import TensorRtBackend

        return TensorRtBackend(graph, device, fp16=fp16)
    return OnnxRuntimeBackend(graph, device, threads, tensorrt=name == "onnxruntime-tensorrt", fp16=fp16)
