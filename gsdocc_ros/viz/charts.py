"""Charts of scores: IoU per class in the Occ3D colours, the mean dashed (mIoU, and RayIoU below it when scored)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gsdocc_ros.pipeline.grid import FREE_INDEX, OCC3D_COLORS
from gsdocc_ros.pipeline.metrics import OccupancyConfusion
from gsdocc_ros.pipeline.ray_metrics import RayIoU


def _bars(ax: Any, iou: np.ndarray, names: Sequence[str], mean: float, label: str, ylabel: str) -> None:
    """One bar per non-free class of ``iou`` (float (classes,), NaN = n/a) in Occ3D colours, ``mean`` dashed."""
    classes = [c for c in range(len(iou)) if c != FREE_INDEX]
    values = [0.0 if np.isnan(iou[c]) else 100 * iou[c] for c in classes]
    ax.bar(range(len(classes)), values, color=OCC3D_COLORS[classes] / 255.0, edgecolor="black", linewidth=0.6)
    for x, c in enumerate(classes):
        ax.text(x, values[x] + 1, "n/a" if np.isnan(iou[c]) else f"{values[x]:.1f}", ha="center", fontsize=8)
    if not np.isnan(mean):
        ax.axhline(100 * mean, color="grey", linestyle="--", linewidth=1, label=f"{label} {100 * mean:.2f}")
        ax.legend(loc="upper right")
    ax.set_xticks(range(len(classes)), [names[c] for c in classes], rotation=45, ha="right")
    ax.set_ylim(0, 118)  # room for the legend above a 100 % bar
    ax.set_ylabel(ylabel)


def plot_per_class(confusion: OccupancyConfusion, title: str, rays: RayIoU | None = None) -> Figure:
    """Bar chart of IoU (percent) per class 0..16 in Occ3D colours, mean dashed; below it RayIoU's when given."""
    fig = Figure(figsize=(11, 5 if rays is None else 10), dpi=100, layout="constrained")
    axes = fig.subplots(1 if rays is None else 2, 1, squeeze=False)[:, 0]
    _bars(axes[0], confusion.iou(), confusion.class_names, confusion.miou(), "mIoU", "IoU (%) inside mask_camera")
    if rays is not None:
        at = " / ".join(f"{100 * v:.1f}" for v in rays.per_threshold())
        _bars(axes[1], rays.class_means(), rays.class_names, rays.rayiou(),
              f"RayIoU (@{' / '.join(f'{t:g}' for t in rays.thresholds_m)} m: {at})", "RayIoU (%), mean of 1/2/4 m")
    axes[0].set_title(title)
    return fig


