"""The runner's named choices, kept free of torch so that a command line can offer them without importing it."""

CADENCES = ("keyframe", "every_frame")
IMAGE_FITS = ("official", "intrinsics")
PREPROCESSORS = ("auto", "pillow", "torch")
SPLATS = ("auto", "indices", "scatter")
PRECISION_NAMES = ("fp32", "fp16", "bf16")
"""Autocast precisions, in the order of runner.PRECISIONS (name -> torch dtype)."""
