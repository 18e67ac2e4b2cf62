"""The runtimes' own pieces: ONNX Runtime's CPU session sums a scatter with duplicate indices exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from gsdocc_ros.deploy.backends import OnnxRuntimeBackend, serial_scatter


def scatter_graph(path: Path, rows: int, count: int, channels: int) -> None:
    """out [rows,C] = zeros + ScatterND(add) of updates [count,C] at indices [count,1]: the splat's form."""
    node = helper.make_node("ScatterND", ["data", "indices", "updates"], ["out"], reduction="add", name="splat")
    graph = helper.make_graph(
        [node], "scatter",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [rows, channels]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, [count, 1]),
         helper.make_tensor_value_info("updates", TensorProto.FLOAT, [count, channels])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [rows, channels])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_onnxruntime_cpu_sums_duplicate_indices_exactly(tmp_path: Path) -> None:
    rows, count, channels = 64, 400_000, 8  # ~6,000 additions per row, from two threads
    scatter_graph(tmp_path / "scatter.onnx", rows, count, channels)
    rewritten = onnx.load_from_string(serial_scatter(tmp_path / "scatter.onnx"))
    assert [node.op_type for node in rewritten.graph.node] == ["Shape", "Expand", "ScatterElements"]
    rng = np.random.default_rng(0)
    indices = rng.integers(0, rows, (count, 1))
    updates = rng.integers(-4, 5, (count, channels)).astype(np.float32)  # integers: float32 sums are exact
    expected = np.zeros((rows, channels), np.float32)
    np.add.at(expected, indices[:, 0], updates)
    backend = OnnxRuntimeBackend(tmp_path / "scatter.onnx", threads=2)
    for _ in range(10):  # the plain ScatterND session had wrong sums in 1 of 5 runs of this on two threads
        out = backend.run({"data": np.zeros((rows, channels), np.float32), "indices": indices, "updates": updates})
        np.testing.assert_array_equal(out["out"], expected)
