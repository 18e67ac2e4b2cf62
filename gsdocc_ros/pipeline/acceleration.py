"""Speed options applied to a loaded model on its device: channels-last memory format and cuDNN autotuning.

Channels-last stores every 2D conv weight as NHWC and every 3D conv weight as NDHWC, so the convolutions run
on their channels-last kernels and hand channels-last activations to the next layer (the LSS voxels already
come out of the splat in that layout). Measured on a 2-core CPU with the real sample images (benchmarks/README.md),
it cuts the CPU time of one 256x704 forward by about a fifth, mostly in the occupancy head's 3D convolutions,
and changes logits by float reordering only (~3e-8 here, no label changed).
"""

from __future__ import annotations

import torch
from torch import nn

_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}
"""Weight rank -> channels-last memory format."""


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-D and 5-D parameter of ``model`` channels-last, in place (same values); returns ``model``."""
    with torch.no_grad():
        for param in model.parameters():
            memory_format = _FORMATS.get(param.dim())
            if memory_format is not None:
                param.data = param.data.contiguous(memory_format=memory_format)
    return model


def is_channels_last(model: nn.Module) -> bool:
    """True when every 4-D and 5-D parameter of ``model`` is stored channels-last."""
    return all(param.is_contiguous(memory_format=_FORMATS[param.dim()])
               for param in model.parameters() if param.dim() in _FORMATS)


def configure_backend(device: torch.device) -> None:
    """Let cuDNN pick the fastest algorithm per input shape (shapes are fixed per input size); no-op on CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


STATIC_STAGES = ("encode_images", "estimate_depth", "encode_bev", "head")
"""GSDOCC stage methods whose input shapes never change for a given input size; the splat and the history
fusion are left eager (they branch on the calibration cache and the sequence state)."""


def compile_static_stages(model: nn.Module, mode: str | None = None, backend: str = "inductor",
                          stages: tuple[str, ...] = STATIC_STAGES) -> nn.Module:
    """Replace static-shape stage methods of a GSDOCC ``model`` by ``torch.compile``d ones, in place.

    ``mode`` "reduce-overhead" adds CUDA graphs on a GPU. Opt-in (gsdocc bench --compile): on the 2-core CPU the
    four stages take about two minutes to compile and then cost 7-25 % less CPU time (benchmarks/README.md).
    """
    unknown = set(stages) - set(STATIC_STAGES)
    if unknown:
        raise ValueError(f"stages: {sorted(unknown)} are not static-shape stages; choose from {STATIC_STAGES}")
    for name in stages:
        setattr(model, name, torch.compile(getattr(model, name), mode=mode, backend=backend, dynamic=False))
    return model
