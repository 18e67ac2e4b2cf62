"""Host -> device uploads that never make the host wait for the GPU.

A copy from ordinary (pageable) host memory with ``non_blocking=False``, or a tensor made on the device from
host data (``torch.tensor(..., device="cuda")``), synchronises the stream. The runner instead writes each
frame's host data into a buffer allocated once, pinned on CUDA, and copies it asynchronously; a CUDA event
makes the next write wait only for the previous copy out of that buffer (long finished in a steady stream).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch
from torch import Tensor


class UploadBuffer:
    """A host tensor and its device twin of one shape and dtype; on CPU the two are the same tensor."""

    def __init__(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            self.host = torch.empty(tuple(shape), dtype=dtype, pin_memory=True)
            self.target = torch.empty_like(self.host, device=device)
            self._copied: torch.cuda.Event | None = torch.cuda.Event()
        else:
            self.host = self.target = torch.empty(tuple(shape), dtype=dtype, device=device)
            self._copied = None

    def writable(self) -> np.ndarray:
        """The host buffer as a numpy array to fill, once the previous upload from it has finished."""
        if self._copied is not None:
            self._copied.synchronize()  # waits for that copy only, not for the stream
        return self.host.numpy()

    def upload(self) -> Tensor:
        """The device tensor holding what was written; asynchronous on CUDA. Reused by the next upload."""
        if self._copied is not None:
            self.target.copy_(self.host, non_blocking=True)
            self._copied.record(torch.cuda.current_stream(self.device))
        return self.target


class Uploader:
    """Upload buffers by name, made on first use and remade only when an array's shape or dtype changes."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers: dict[Hashable, UploadBuffer] = {}

    def buffer(self, name: Hashable, shape: Sequence[int], dtype: torch.dtype) -> UploadBuffer:
        """The buffer called ``name`` for ``shape`` and ``dtype``."""
        buffer = self._buffers.get(name)
        if buffer is None or tuple(buffer.host.shape) != tuple(shape) or buffer.host.dtype != dtype:
            buffer = self._buffers[name] = UploadBuffer(shape, dtype, self.device)
        return buffer

    def __call__(self, name: Hashable, array: np.ndarray) -> Tensor:
        """``array`` on the device, through the buffer called ``name``; on CPU, ``array`` itself as a tensor."""
        if self.device.type == "cpu":
            return torch.from_numpy(np.ascontiguousarray(array))
        buffer = self.buffer(name, array.shape, torch.as_tensor(np.empty(0, array.dtype)).dtype)
        buffer.writable()[...] = array
        return buffer.upload()
