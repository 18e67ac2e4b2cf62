"""Fixtures of the deployment tests: the reduced model (deploy_data.REDUCED), its export, real sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_data import REDUCED, SCENES, Step, calibrate, sequence
from gsdocc_ros.deploy.export import export_step_graph
from gsdocc_ros.pipeline.runner import load_model


@pytest.fixture(scope="session")
def reduced_model(shared_data: Path):
    """Seeded random weights, calibrated on scene-0061's sequence (deploy_data.calibrate)."""
    model = load_model(None, REDUCED, allow_random_weights=True)[0]
    return calibrate(model, sequence(shared_data / "nuscenes_sample" / SCENES[0]))


@pytest.fixture(scope="session")
def reduced_export(reduced_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reduced model exported once for the session (fp32, opset 18)."""
    folder = tmp_path_factory.mktemp("export")
    export_step_graph(reduced_model, folder, "random seed 0", None)
    return folder


@pytest.fixture(scope="session", params=SCENES)
def scene_sequence(request: pytest.FixtureRequest, shared_data: Path) -> list[Step]:
    return sequence(shared_data / "nuscenes_sample" / request.param)
