"""The runner's named choices, kept free of torch so that a command line can offer them without importing it."""

CADENCES = ("keyframe", "every_frame")
IMAGE_FITS = ("official", "intrinsics")
PREPROCESSORS = ("auto", "pillow", "torch")
SPLATS = ("auto", "indices", "scatter")
PRECISION_NAMES = ("fp32", "fp16", "bf16")
"""Autocast precisions, in the order of runner.PRECISIONS (name -> torch dtype)."""
GRAPH_BACKENDS = ("onnxruntime", "onnxruntime-tensorrt", "openvino", "tensorrt")
"""Backends that run the graph `gsdocc export` wrote (gsdocc_ros.deploy); ``torch`` runs the model's own modules."""
BACKENDS = ("torch", *GRAPH_BACKENDS)
EXPORT_PRECISIONS = ("fp32", "fp16")
"""Precisions `gsdocc export` writes a graph in."""
DEFAULT_OPSET = 18
"""ONNX opset of an exported graph (the dynamo exporter needs 18 or newer)."""
