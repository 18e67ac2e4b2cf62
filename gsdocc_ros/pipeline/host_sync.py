"""Find what in a step would make the host wait for the GPU, on any device.

A GPU step stays fast while the host queues kernels ahead of the device; every value the host reads back
(a size from ``nonzero`` or ``unique``, a Python number from ``item``, the flag of a checked matrix inverse)
drains that queue. ``torch.cuda.set_sync_debug_mode`` reports such calls, but only on a GPU. ``HostSyncAudit``
finds the same operations anywhere, the CPU test machine included: a dispatch mode that records each aten
operation whose result the host must read from the device, with the line of this package that called it.
Copies between host and device are invisible on a CPU; the runner keeps them to its upload buffers
(pipeline.staging) and the one copy of the result, which ``cuda_sync_warnings`` counts on a GPU.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PACKAGE_DIR = Path(__file__).resolve().parents[1]

SYNCING_OPS = frozenset({
    "_local_scalar_dense", "item",  # tensor -> Python number (also int(t), float(t), bool(t), if t: ...)
    "is_nonzero", "equal", "allclose",  # answers as Python bools
    "nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive",  # output size depends on data
    "bincount", "repeat_interleave",  # output size read from the data unless given
    "inverse", "linalg_inv", "_linalg_check_errors",  # checked inverse: reads the singularity flag back
})
"""aten operations that block the host on CUDA. ``item``, ``inverse`` and ``linalg_inv`` appear under inference
mode, which dispatches these composites undecomposed."""

INDEXING_OPS = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})
"""aten operations that sync when an index is a boolean mask (its ``nonzero`` happens inside the kernel)."""


def _caller() -> str:
    """``path:line`` of the innermost frame of this package outside this module, or '?'."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename)
        if PACKAGE_DIR in path.parents and path != Path(__file__).resolve():
            return f"{path.relative_to(PACKAGE_DIR.parent)}:{frame.lineno}"
    return "?"


def _has_mask_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in indices)


class HostSyncAudit(TorchDispatchMode):
    """Context manager recording the syncing operations run inside it: ``found[(op, 'file:line')] = count``."""

    def __init__(self) -> None:
        super().__init__()
        self.found: Counter[tuple[str, str]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        name = func._schema.name.split("::")[-1]
        if name in SYNCING_OPS or (name in INDEXING_OPS and _has_mask_index(args)):
            self.found[(name, _caller())] += 1
        return func(*args, **(kwargs or {}))

    def report(self) -> dict[str, int]:
        """``{'op at file:line': count}``, most frequent first."""
        return {f"{op} at {where}": count for (op, where), count in self.found.most_common()}


def cuda_sync_warnings(fn: Callable[[], object]) -> list[str]:
    """Run ``fn`` with CUDA's sync debug mode on; the text of each synchronising call it reported."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
