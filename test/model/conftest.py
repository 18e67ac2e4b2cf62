"""Fixtures for the model tests: the official checkpoint's reference key list and a synthetic checkpoint of it."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
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


@pytest.fixture(scope="session")
def synthetic_state(reference_shapes) -> dict[str, torch.Tensor]:
    """A random-valued state dict with exactly the reference keys and shapes (an official checkpoint's content).

    Each tensor is a view into one shared random buffer at its own offset, so values differ per key while a
    saved file holds the buffer once (~40 MB instead of 460 MB). dx/bx/nx carry the official grid values.
    """
    fixed = {"forward_projection.dx": torch.tensor([0.8, 0.8, 0.8]),
             "forward_projection.bx": torch.tensor([-39.6, -39.6, -0.6]),
             "forward_projection.nx": torch.tensor([100, 100, 8])}
    stride = 7
    largest = max(math.prod(shape) for shape in reference_shapes.values())
    buffer = torch.randn(largest + stride * len(reference_shapes), generator=torch.Generator().manual_seed(7))
    state: dict[str, torch.Tensor] = {}
    for i, (key, shape) in enumerate(reference_shapes.items()):
        if key in fixed:
            state[key] = fixed[key]
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000 + i)
        else:
            state[key] = buffer[stride * i: stride * i + math.prod(shape)].view(shape)
    return state
