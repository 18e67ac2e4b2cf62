"""Occ3D-nuScenes semantic occupancy metrics as accumulators, free of any file or network I/O.

The official protocol (field_notes.md section 5, gsdocc_model.md section 6): keep only the voxels inside
the ground truth's ``mask_camera``, accumulate ONE 18x18 confusion matrix over the whole split (not a
mean of per-sample scores), IoU_c = TP / (TP + FP + FN), and mIoU = nanmean of IoU over classes 0..16
(free, 17, excluded). A class with TP + FP + FN = 0 (absent from both the ground truth and the prediction
inside the mask, over everything accumulated) has IoU NaN and does not count in the mean; a class that
is predicted but absent from the ground truth has IoU 0 and does count.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from gsdocc_ros.pipeline.grid import CLASS_NAMES, FREE_INDEX


def _check_labels(labels: ArrayLike, name: str, num_classes: int) -> np.ndarray:
    """``labels`` as an integer array with every value in [0, num_classes); ValueError naming ``name`` otherwise."""
    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class labels, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        bad = np.unique(array[(array < 0) | (array >= num_classes)])
        raise ValueError(f"{name}: labels must lie in [0, {num_classes - 1}], found {bad[:10].tolist()}")
    return array


class OccupancyConfusion:
    """An 18x18 int64 confusion matrix (rows: ground truth, columns: prediction) accumulated over a split.

    ``update`` adds one sample; ``merge`` / ``+`` add another accumulator (another rank, another shard).
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES), free_index: int = FREE_INDEX,
                 class_names: tuple[str, ...] = CLASS_NAMES) -> None:
        if len(class_names) != num_classes:
            raise ValueError(f"class_names: {len(class_names)} names for num_classes={num_classes}")
        if not 0 <= free_index < num_classes:
            raise ValueError(f"free_index {free_index} outside [0, {num_classes - 1}]")
        self.num_classes = num_classes
        self.free_index = free_index
        self.class_names = class_names
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        """Counts [ground-truth class, predicted class] of the voxels scored so far."""
        self.num_samples = 0
        """Number of ``update`` calls folded in (merged accumulators add theirs)."""

    def update(self, pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> None:
        """Add one sample: ``pred`` and ``gt`` integer labels of equal shape (Occ3D: (200, 200, 16) in x, y, z),
        ``mask`` bool or 0/1 of the same shape selecting the scored voxels (Occ3D: ``mask_camera``); None scores all.
        """
        pred = _check_labels(pred, "pred", self.num_classes)
        gt = _check_labels(gt, "gt", self.num_classes)
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} differs from gt shape {gt.shape}")
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != gt.shape:
                raise ValueError(f"mask shape {mask.shape} differs from gt shape {gt.shape}")
            if mask.dtype != np.bool_:
                if not np.issubdtype(mask.dtype, np.integer) or (mask.size and (mask.min() < 0 or mask.max() > 1)):
                    raise ValueError(f"mask: expected bool or 0/1 integers, got dtype {mask.dtype} "
                                     f"with values {np.unique(mask)[:10].tolist()}")
                mask = mask.astype(bool)
            pred, gt = pred[mask], gt[mask]  # (M,) scored voxels only
        # int64 before multiplying: uint8 * 18 would wrap around.
        pair = gt.astype(np.int64).ravel() * self.num_classes + pred.astype(np.int64).ravel()
        counts = np.bincount(pair, minlength=self.num_classes ** 2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)
        self.num_samples += 1

    def _check_compatible(self, other: OccupancyConfusion) -> None:
        """TypeError / ValueError unless ``other`` counts the same classes."""
        if not isinstance(other, OccupancyConfusion):
            raise TypeError(f"cannot merge an OccupancyConfusion with a {type(other).__name__}")
        if (other.num_classes, other.free_index, other.class_names) != (
                self.num_classes, self.free_index, self.class_names):
            raise ValueError("cannot merge confusion matrices over different class sets")

    def merge(self, other: OccupancyConfusion) -> OccupancyConfusion:
        """Add ``other``'s counts into this accumulator in place; returns self."""
        self._check_compatible(other)
        self.matrix += other.matrix
        self.num_samples += other.num_samples
        return self

    def __add__(self, other: OccupancyConfusion) -> OccupancyConfusion:
        """A new accumulator with the counts of both."""
        self._check_compatible(other)
        total = OccupancyConfusion(self.num_classes, self.free_index, self.class_names)
        return total.merge(self).merge(other)

    def __eq__(self, other: object) -> bool:
        """Equal class sets and identical counts."""
        return (isinstance(other, OccupancyConfusion) and other.class_names == self.class_names
                and other.free_index == self.free_index and np.array_equal(other.matrix, self.matrix))

    @property
    def true_positives(self) -> np.ndarray:
        """int64 (num_classes,): voxels of class c predicted as c."""
        return np.diag(self.matrix).copy()

    @property
    def gt_counts(self) -> np.ndarray:
        """int64 (num_classes,): scored ground-truth voxels of each class (TP + FN)."""
        return self.matrix.sum(axis=1)

    @property
    def pred_counts(self) -> np.ndarray:
        """int64 (num_classes,): scored voxels predicted as each class (TP + FP)."""
        return self.matrix.sum(axis=0)

    def iou(self) -> np.ndarray:
        """float64 (num_classes,) IoU_c = TP / (TP + FP + FN) in [0, 1]; NaN where the union is empty."""
        union = self.gt_counts + self.pred_counts - self.true_positives
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, self.true_positives / np.maximum(union, 1), np.nan)

    def scored_classes(self) -> np.ndarray:
        """Indices of the classes that enter the mean: every class except free."""
        return np.array([c for c in range(self.num_classes) if c != self.free_index])

    def miou(self) -> float:
        """nanmean of IoU over the non-free classes, in [0, 1]; NaN when nothing has been scored."""
        values = self.iou()[self.scored_classes()]
        return float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")

    def table(self) -> str:
        """The per-class table (IoU in percent, voxel counts) with the mIoU as its last line."""
        iou = self.iou()
        gt, pred, tp = self.gt_counts, self.pred_counts, self.true_positives
        width = max(len(name) for name in self.class_names)
        lines = [f"{'#':>2}  {'class':<{width}}  {'IoU %':>7}  {'GT voxels':>12}  {'pred voxels':>12}  {'TP':>12}"]
        for c, name in enumerate(self.class_names):
            value = "-" if np.isnan(iou[c]) else f"{100 * iou[c]:.2f}"
            note = "  (not in mIoU)" if c == self.free_index else ""
            lines.append(f"{c:>2}  {name:<{width}}  {value:>7}  {gt[c]:>12,}  {pred[c]:>12,}  {tp[c]:>12,}{note}")
        counted = int(np.count_nonzero(~np.isnan(iou[self.scored_classes()])))
        lines.append(f"mIoU {100 * self.miou():.2f} % over {counted} of {len(self.scored_classes())} classes "
                     f"('-' = absent from GT and prediction: left out of the mean), "
                     f"{int(self.matrix.sum()):,} voxels from {self.num_samples} samples")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready summary: mIoU and per-class IoU in percent (None for NaN), counts and the full matrix."""
        iou = self.iou()
        miou = self.miou()
        return {
            "miou_percent": None if np.isnan(miou) else 100 * miou,
            "classes_in_mean": [int(c) for c in self.scored_classes() if not np.isnan(iou[c])],
            "num_samples": self.num_samples,
            "voxels_scored": int(self.matrix.sum()),
            "per_class": [
                {"index": c, "name": name, "iou_percent": None if np.isnan(iou[c]) else 100 * float(iou[c]),
                 "in_mean": c != self.free_index and not np.isnan(iou[c]),
                 "gt_voxels": int(self.gt_counts[c]), "pred_voxels": int(self.pred_counts[c]),
                 "true_positives": int(self.true_positives[c])}
                for c, name in enumerate(self.class_names)
            ],
            "confusion_matrix": self.matrix.tolist(),
            "confusion_matrix_axes": "rows: ground-truth class, columns: predicted class",
        }
