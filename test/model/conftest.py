"""Fixtures for the model tests: the reference state-dict key list of the official checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from torch import nn

KEY_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "gsdocc_state_dict_keys.txt"


def _parse_shape(text: str) -> tuple[int, ...]:
    """'[512,3,3]' -> (512, 3, 3); '[]' -> ()."""
    return tuple(int(v) for v in text.strip("[]").split(",") if v)


@pytest.fixture(scope="session")
def reference_shapes() -> dict[str, tuple[int, ...]]:
    """Official state-dict keys in order, each with its shape (629 entries)."""
    if not KEY_FILE.is_file():
        pytest.fail(f"reference key file missing: {KEY_FILE}")
    entries = [line.split() for line in KEY_FILE.read_text().splitlines() if line.strip()]
    return {key: _parse_shape(shape) for key, shape in entries}


@pytest.fixture(scope="session")
def reference_under(reference_shapes) -> Callable[[str], list[tuple[str, tuple[int, ...]]]]:
    """f(prefix): the reference entries under ``prefix.`` with the prefix removed, in order."""
    return lambda prefix: [(k[len(prefix) + 1:], s) for k, s in reference_shapes.items()
                           if k.startswith(prefix + ".")]


@pytest.fixture(scope="session")
def state_shapes() -> Callable[[nn.Module], list[tuple[str, tuple[int, ...]]]]:
    """f(module): its state-dict keys and shapes, in registration order."""
    return lambda module: [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
