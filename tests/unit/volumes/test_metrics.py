# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Volume metrics against numpy and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score

from anomalib_medclip.volumes import VoxelCurves, dice_2d_mean, hd95, volume_scores


def _reference(pred: np.ndarray, gt: np.ndarray, counted: np.ndarray) -> dict[str, float]:
    p, g = pred[counted], gt[counted]
    tp, fp, fn, tn = (p & g).sum(), (p & ~g).sum(), (~p & g).sum(), (~p & ~g).sum()

    def ratio(a: int, b: int) -> float:
        return a / b if b else math.nan

    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn) if g.any() else math.nan,
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
    }


@pytest.mark.parametrize("case", ["random", "empty_gt", "all_zero_pred", "no_brain_mask"])
def test_volume_scores_match_numpy(case: str) -> None:
    rng = np.random.default_rng(0)
    shape = (20, 18, 12)
    gt = rng.random(shape) > 0.8 if case != "empty_gt" else np.zeros(shape, bool)
    pred = rng.random(shape) > 0.7 if case != "all_zero_pred" else np.zeros(shape, bool)
    counted = rng.random(shape) > 0.3 if case != "no_brain_mask" else np.ones(shape, bool)
    scores = volume_scores(pred, gt, None if case == "no_brain_mask" else counted)
    for name, expected in _reference(pred, gt, counted).items():
        assert getattr(scores, name) == pytest.approx(expected, nan_ok=True), name
    assert scores.lesion_voxels == (gt & counted).sum()
    assert scores.predicted_voxels == (pred & counted).sum()
    if case == "empty_gt":
        assert math.isnan(scores.dice)
        assert not math.isnan(scores.specificity)
    if case == "all_zero_pred":
        assert scores.dice == 0
        assert math.isnan(scores.ppv)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="one shape"):
        volume_scores(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))


def test_dice_2d_mean_matches_slice_loop() -> None:
    rng = np.random.default_rng(1)
    gt = np.zeros((10, 10, 6), bool)
    gt[2:6, 2:6, 1:4] = True
    pred = rng.random(gt.shape) > 0.5
    mean, per_slice = dice_2d_mean(pred, gt)
    expected = [2 * (pred[..., z] & gt[..., z]).sum() / (pred[..., z].sum() + gt[..., z].sum()) for z in (1, 2, 3)]
    assert mean == pytest.approx(np.mean(expected))
    assert np.isnan(per_slice[[0, 4, 5]]).all()
    assert math.isnan(dice_2d_mean(pred, np.zeros_like(gt))[0])


def test_binned_voxel_curves_match_sklearn_on_ten_million_voxels() -> None:
    rng = np.random.default_rng(2)
    n = 10_000_000
    gt = rng.random(n) < 0.05
    scores = np.clip(rng.normal(0.35 + 0.25 * gt, 0.15), 0, 1).astype(np.float32)
    curves = VoxelCurves(thresholds=1000)
    for chunk in np.array_split(np.arange(n), 5):  # accumulated volume by volume
        curves.update(scores[chunk], gt[chunk])
    out = {key: float(value) for key, value in curves.compute().items()}
    assert out["voxel_auroc"] == pytest.approx(roc_auc_score(gt, scores), abs=1e-3)
    precision, recall, _ = precision_recall_curve(gt, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    assert out["voxel_f1_max"] == pytest.approx(f1.max(), abs=1e-3)


def test_binned_curves_equal_exact_metrics_of_binned_scores() -> None:
    """Binning = rounding each score down to its threshold; on those scores the binned curves are exact."""
    rng = np.random.default_rng(3)
    gt = rng.random(20_000) < 0.2
    scores = np.clip(rng.normal(0.4 + 0.2 * gt, 0.2), 0, 1).astype(np.float32)
    edges = np.linspace(0, 1, 101, dtype=np.float32)
    binned = edges[np.searchsorted(edges, scores, side="right") - 1]
    curves = VoxelCurves(thresholds=101)
    curves.update(scores, gt)
    out = {key: float(value) for key, value in curves.compute().items()}
    assert out["voxel_auroc"] == pytest.approx(roc_auc_score(gt, binned), abs=5e-5)  # torchmetrics: float32
    precision, recall, _ = precision_recall_curve(gt, binned)
    assert out["voxel_f1_max"] == pytest.approx(np.nanmax(2 * precision * recall / (precision + recall)), abs=1e-6)
    blocks = VoxelCurves(thresholds=101)
    blocks.chunk = 997  # 21 blocks, the last one partial: the same counts as one block
    blocks.update(torch.from_numpy(scores), torch.from_numpy(gt))
    assert torch.equal(blocks.confmat, curves.confmat)
    empty = VoxelCurves()
    empty.update(scores, np.zeros_like(gt))
    assert math.isnan(empty.compute()["voxel_auroc"])


def test_hd95_matches_scipy_distance_transforms() -> None:
    rng = np.random.default_rng(4)
    gt = np.zeros((16, 16, 10), bool)
    gt[4:10, 5:11, 3:7] = True
    pred = gt ^ (rng.random(gt.shape) > 0.97)
    spacing = (1.0, 0.8, 2.0)

    def surface_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        border = a & ~ndimage.binary_erosion(a)
        other = b & ~ndimage.binary_erosion(b)
        return ndimage.distance_transform_edt(~other, sampling=spacing)[border]

    expected = max(np.percentile(surface_distances(pred, gt), 95), np.percentile(surface_distances(gt, pred), 95))
    assert hd95(pred, gt, spacing) == pytest.approx(expected, rel=1e-5)
    assert math.isnan(hd95(np.zeros_like(gt), gt, spacing))
