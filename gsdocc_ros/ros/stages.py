"""The node's stages, by name, each with what its time measures: the node reports them in /diagnostics as
``stage_<name>_ms`` (the last grid's), and the demo's summary explains them with STAGE_DESCRIPTIONS.

A StrEnum, so a member is its own name string (``stages[NodeStage.NETWORK]`` and ``"network"`` are the same key).
PREPROCESS, NETWORK and POSTPROCESS are the runner's own timings (pipeline.runner.StepResult.timings_ms).
"""

from __future__ import annotations

from enum import StrEnum


class NodeStage(StrEnum):
    """Every stage the node times for a grid, in the order a camera set goes through them."""

    DECODE_AND_TF = "decode_and_tf"
    PREPROCESS = "preprocess"
    NETWORK = "network"
    POSTPROCESS = "postprocess"
    GRID_MESSAGE = "grid_message"
    MARKERS = "markers"
    POINTS = "points"
    SET_WAIT = "set_wait"


STAGE_DESCRIPTIONS: dict[NodeStage, str] = {
    NodeStage.DECODE_AND_TF: "decoding the six JPEG images (in parallel) and looking up tf at their stamps",
    NodeStage.PREPROCESS: "resizing, cropping and normalising the images into the network's input",
    NodeStage.NETWORK: "the GSD-OCC forward pass (backbone, depth, lift to 3D, temporal fusion, occupancy head), "
                       "each voxel's class and confidence, copied off the device",
    NodeStage.POSTPROCESS: "building the occupancy grid (and its camera-visibility mask when enabled)",
    NodeStage.GRID_MESSAGE: "packing the grid into a SemanticVoxelGrid message and publishing it",
    NodeStage.MARKERS: "building the RViz markers (near 0 when nobody subscribes)",
    NodeStage.POINTS: "building the PointCloud2 (near 0 when nobody subscribes)",
    NodeStage.SET_WAIT: "waiting for the previous set's inference to finish (the node infers one set at a time; "
                        "when sets come faster than it infers, this is queueing, not work)",
}
"""What each stage's time is, in words (the demo prints it beside the time)."""
