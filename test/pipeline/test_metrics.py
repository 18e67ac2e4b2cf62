"""Occ3D mIoU accumulator: exact scores on the real Occ3D label file, against arithmetic done by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gsdocc_ros.pipeline.grid import FREE_INDEX
from gsdocc_ros.pipeline.metrics import OccupancyConfusion

CAR, TRUCK, VEGETATION = 4, 10, 16


@pytest.fixture(scope="module")
def occ3d(shared_data: Path) -> dict[str, np.ndarray]:
    """The real Occ3D-nuScenes labels.npz: semantics, mask_camera (as bool), mask_lidar."""
    with np.load(shared_data / "occ3d_sample" / "labels.npz") as npz:
        data = {key: npz[key] for key in ("semantics", "mask_camera", "mask_lidar")}
    data["mask_camera"] = data["mask_camera"].astype(bool)
    return data


def reference_iou(pred: np.ndarray, gt: np.ndarray, num_classes: int = 18) -> np.ndarray:
    """Slow twin: IoU per class from boolean set operations, NaN where the union is empty."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        union = np.count_nonzero((pred == c) | (gt == c))
        if union:
            out[c] = np.count_nonzero((pred == c) & (gt == c)) / union
    return out


def test_sample_file_facts(occ3d: dict[str, np.ndarray]) -> None:
    # The numbers the data README states, so a wrong file fails here rather than in a score.
    assert occ3d["semantics"].shape == (200, 200, 16) and occ3d["semantics"].dtype == np.uint8
    assert int(occ3d["mask_camera"].sum()) == 43_355
    assert set(np.unique(occ3d["semantics"]).tolist()) == {0, 1, 3, 4, 6, 11, 13, 14, 15, 16, 17}


def test_gt_against_itself_is_exactly_100(occ3d: dict[str, np.ndarray]) -> None:
    gt, mask = occ3d["semantics"], occ3d["mask_camera"]
    confusion = OccupancyConfusion()
    confusion.update(gt, gt, mask)
    # nanmean semantics: classes absent from GT and prediction inside the mask have IoU NaN and are left out.
    present = set(np.unique(gt[mask]).tolist()) - {FREE_INDEX}
    iou = confusion.iou()
    assert {c for c in range(17) if not np.isnan(iou[c])} == present
    assert confusion.miou() == 1.0
    assert confusion.matrix.sum() == 43_355 and np.count_nonzero(confusion.matrix - np.diag(np.diag(confusion.matrix))) == 0


def car_as_truck(occ3d: dict[str, np.ndarray]) -> OccupancyConfusion:
    """The real file scored against itself with every visible car predicted as a truck."""
    gt, mask = occ3d["semantics"], occ3d["mask_camera"]
    pred = gt.copy()
    pred[(gt == CAR) & mask] = TRUCK
    confusion = OccupancyConfusion()
    confusion.update(pred, gt, mask)
    return confusion


def test_car_relabelled_as_truck_scores_what_arithmetic_says(occ3d: dict[str, np.ndarray]) -> None:
    gt, mask = occ3d["semantics"], occ3d["mask_camera"]
    confusion = car_as_truck(occ3d)
    n_car = int(np.count_nonzero((gt == CAR) & mask))
    n_truck = int(np.count_nonzero((gt == TRUCK) & mask))
    # car: TP 0, FN n_car -> 0; truck: TP n_truck, FP n_car -> n_truck / (n_truck + n_car).
    assert confusion.iou()[CAR] == 0.0
    assert confusion.iou()[TRUCK] == n_truck / (n_truck + n_car)
    present = set(np.unique(gt[mask]).tolist()) - {FREE_INDEX}
    in_mean = present | {TRUCK}
    expected = (len(present - {CAR}) * 1.0 + 0.0 + n_truck / (n_truck + n_car)) / len(in_mean)
    assert confusion.miou() == pytest.approx(expected, abs=1e-15)
    assert confusion.matrix[CAR, TRUCK] == n_car == 1584


def test_vegetation_half_missed_as_free(occ3d: dict[str, np.ndarray]) -> None:
    gt, mask = occ3d["semantics"], occ3d["mask_camera"]
    pred = gt.copy()
    veg = np.flatnonzero((gt == VEGETATION) & mask)
    pred.flat[veg[::2]] = FREE_INDEX  # every other vegetation voxel predicted free
    confusion = OccupancyConfusion()
    confusion.update(pred, gt, mask)
    missed, kept = len(veg[::2]), len(veg) - len(veg[::2])
    n_free = int(np.count_nonzero((gt == FREE_INDEX) & mask))
    assert confusion.iou()[VEGETATION] == kept / len(veg)
    assert confusion.iou()[FREE_INDEX] == n_free / (n_free + missed)
    present = set(np.unique(gt[mask]).tolist()) - {FREE_INDEX}
    assert confusion.miou() == pytest.approx((len(present) - 1 + kept / len(veg)) / len(present), abs=1e-15)


def test_voxels_outside_the_camera_mask_do_not_count(occ3d: dict[str, np.ndarray]) -> None:
    gt, mask = occ3d["semantics"], occ3d["mask_camera"]
    pred = gt.copy()
    pred[~mask] = (gt[~mask].astype(np.int64) + 1) % 18  # every unseen voxel wrong
    confusion = OccupancyConfusion()
    confusion.update(pred, gt, mask)
    assert confusion.miou() == 1.0
    unmasked = OccupancyConfusion()
    unmasked.update(pred, gt)
    assert unmasked.matrix.sum() == gt.size and unmasked.miou() < 0.5


def test_confusion_matches_the_slow_twin_on_random_labels() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 18, size=(20, 30, 16), dtype=np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 18, size=gt.shape)).astype(np.uint8)
    mask = rng.random(gt.shape) < 0.7
    confusion = OccupancyConfusion()
    confusion.update(pred, gt, mask.astype(np.uint8))
    np.testing.assert_allclose(confusion.iou(), reference_iou(pred[mask], gt[mask]), rtol=0, atol=1e-15)


def test_split_accumulation_is_one_matrix_not_a_mean(occ3d: dict[str, np.ndarray]) -> None:
    gt, mask = occ3d["semantics"], occ3d["mask_camera"]
    corrupted = gt.copy()
    corrupted[(gt == CAR) & mask] = TRUCK
    whole = OccupancyConfusion()
    for pred in (gt, corrupted):
        whole.update(pred, gt, mask)
    first, second = OccupancyConfusion(), OccupancyConfusion()
    first.update(gt, gt, mask)
    second.update(corrupted, gt, mask)
    assert (first + second) == whole and (first + second).num_samples == 2
    assert first.merge(second) is first and first == whole
    # Summed counts: car IoU = n_car / (2 n_car); not the mean of the per-sample values (1.0 and 0.0).
    assert whole.iou()[CAR] == 0.5 and whole.iou()[TRUCK] == 0.0


def test_nothing_scored_gives_nan() -> None:
    confusion = OccupancyConfusion()
    assert np.isnan(confusion.miou()) and np.isnan(confusion.iou()).all()
    assert confusion.to_dict()["miou_percent"] is None


@pytest.mark.parametrize(
    ("pred", "gt", "mask", "message"),
    [
        (np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), None, "pred shape"),
        (np.full((2, 2), 18, np.uint8), np.zeros((2, 2), np.uint8), None, r"pred: labels must lie in \[0, 17\]"),
        (np.zeros((2, 2), np.uint8), np.full((2, 2), -1, np.int64), None, "gt: labels"),
        (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), None, "pred: expected integer"),
        (np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((2, 3), bool), "mask shape"),
        (np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.full((2, 2), 2, np.uint8), "mask: expected bool"),
    ],
)
def test_bad_inputs_are_refused_with_a_named_reason(pred, gt, mask, message: str) -> None:
    confusion = OccupancyConfusion()
    with pytest.raises(ValueError, match=message):
        confusion.update(pred, gt, mask)
    assert confusion.matrix.sum() == 0 and confusion.num_samples == 0


def test_merging_different_class_sets_is_refused() -> None:
    other = OccupancyConfusion(num_classes=3, free_index=2, class_names=("a", "b", "free"))
    with pytest.raises(ValueError, match="different class sets"):
        OccupancyConfusion().merge(other)
    with pytest.raises(TypeError):
        OccupancyConfusion() + np.zeros((18, 18), np.int64)  # type: ignore[operator]


def test_table_and_dict_report_the_same_numbers(occ3d: dict[str, np.ndarray]) -> None:
    confusion = car_as_truck(occ3d)
    summary = confusion.to_dict()
    assert summary["miou_percent"] == pytest.approx(100 * 9 / 11)
    assert summary["per_class"][TRUCK]["pred_voxels"] == 1584 and summary["per_class"][TRUCK]["in_mean"]
    assert not summary["per_class"][FREE_INDEX]["in_mean"] and summary["per_class"][2]["iou_percent"] is None
    assert np.array_equal(np.array(summary["confusion_matrix"]), confusion.matrix)
    table = confusion.table()
    assert "mIoU 81.82 % over 11 of 17 classes" in table
    assert any(line.split()[1] == "car" and line.split()[2] == "0.00" for line in table.splitlines()[1:-1])
