# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""finalise_volume on arrays (no Lightning, no files) against numpy/scipy/sklearn; brain-only vs whole-volume Dice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree
from sklearn.metrics import f1_score, precision_score, recall_score

from anomalib_medclip.data.nifti import Volume, slice_to_image
from anomalib_medclip.volumes import EvaluationSettings, VolumeResult, finalise_volume

SHAPE = (20, 18, 12)
SPACING = (1.0, 1.2, 2.0)


@pytest.fixture
def case() -> tuple[Volume, np.ndarray, np.ndarray]:
    """A brain ellipsoid with a lesion that pokes out of it (as a label can), a noisy score map, a background FP."""
    rng = np.random.default_rng(3)
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE)[:, None, None, None] - 1) / 2
    brain = (((grid - centre) / (np.array(SHAPE)[:, None, None, None] / 2.4)) ** 2).sum(0) < 1
    intensities = np.where(brain, 0.2 + rng.random(SHAPE), 0.0).astype(np.float32)
    gt = np.zeros(SHAPE, bool)
    gt[2:8, 6:11, 4:8] = True  # partly outside the brain
    score = (0.3 * gt + 0.6 * rng.random(SHAPE)).astype(np.float32)
    score[:2, :3] = 0.9  # a false positive in the background corner
    affine = np.diag([*SPACING, 1.0])
    image = Volume(intensities, affine, SHAPE, affine, SPACING, Path("scan.nii.gz"))
    return image, gt, score


def _served(score: np.ndarray) -> dict[int, np.ndarray]:
    """What the model hands back per slice: the served orientation at native size (stacking is then exact)."""
    return {z: slice_to_image(score[:, :, z]) for z in range(score.shape[2])}


def _dice(pred: np.ndarray, gt: np.ndarray) -> float:
    return 2 * (pred & gt).sum() / (pred.sum() + gt.sum())


def test_brain_only_metrics_match_sklearn(case: tuple) -> None:
    image, gt, score = case
    brain = image.data > 0
    result = finalise_volume(_served(score), image, gt, EvaluationSettings())
    assert np.array_equal(result.score, np.where(brain, score, 0))
    assert np.array_equal(result.pred, (score > 0.5) & brain)
    assert np.array_equal(result.counted, brain)
    y, p = gt[brain], result.pred[brain]
    assert result.scores.dice == pytest.approx(f1_score(y, p))
    assert result.scores.sensitivity == pytest.approx(recall_score(y, p))
    assert result.scores.specificity == pytest.approx(recall_score(~y, ~p))
    assert result.scores.ppv == pytest.approx(precision_score(y, p))
    assert result.scores.lesion_voxels == y.sum()
    assert result.lesion_ml == pytest.approx(y.sum() * np.prod(SPACING) / 1000)
    per_slice = [f1_score(gt[:, :, z][brain[:, :, z]], p2) for z in range(SHAPE[2]) if (gt & brain)[:, :, z].any()
                 for p2 in [result.pred[:, :, z][brain[:, :, z]]]]  # fmt: skip
    assert result.dice_2d_mean == pytest.approx(np.mean(per_slice))
    row = result.metric_row()
    assert row["dice"] == result.scores.dice
    assert row["threshold"] == 0.5
    assert "hd95" not in row


def test_whole_volume_dice_is_the_official_whole_tumour_dice(case: tuple) -> None:
    """``brain_only=False``: plain binary Dice of ``pred`` vs ``seg > 0`` over the whole grid (BraTS' global WT Dice).

    With a lesion and predictions outside the brain mask, the brain-only Dice differs from it by design.
    """
    image, gt, score = case
    everywhere = finalise_volume(_served(score), image, gt, EvaluationSettings(brain_only=False))
    assert everywhere.counted.all()
    assert np.array_equal(everywhere.pred, score > 0.5)
    assert everywhere.scores.dice == pytest.approx(_dice(score > 0.5, gt))
    brain = image.data > 0
    inside = finalise_volume(_served(score), image, gt, EvaluationSettings())
    assert inside.scores.dice == pytest.approx(_dice((score > 0.5) & brain, gt & brain))
    assert abs(inside.scores.dice - everywhere.scores.dice) > 1e-3


def test_fixed_threshold_smoothing_and_small_components_match_scipy(case: tuple) -> None:
    image, gt, score = case
    settings = EvaluationSettings(threshold_policy="fixed", threshold=0.55, smoothing_sigma=0.8, min_component_voxels=5)
    result = finalise_volume(_served(score), image, gt, settings)
    brain = image.data > 0
    smoothed = np.where(brain, ndimage.gaussian_filter(score, 0.8), 0)
    assert np.allclose(result.score, smoothed, atol=1e-6)
    labels, _ = ndimage.label((smoothed > 0.55) & brain, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())
    expected = (labels > 0) & (sizes[labels] >= 5)
    assert np.array_equal(result.pred, expected)
    assert result.threshold == 0.55


def test_oracle_threshold_is_the_best_on_the_grid(case: tuple) -> None:
    image, gt, score = case
    brain = image.data > 0
    result = finalise_volume(_served(score), image, gt, EvaluationSettings(threshold_policy="oracle"))
    grid = np.linspace(0, 1, 101)
    best = max(grid, key=lambda t: f1_score(gt[brain], score[brain] > t, zero_division=0))
    assert result.threshold == pytest.approx(best)
    assert result.scores.dice == pytest.approx(f1_score(gt[brain], score[brain] > best))


def _directed_hd95(a: np.ndarray, b: np.ndarray) -> float:
    """95th percentile of the distances (mm) from the surface voxels of ``a`` to those of ``b``."""
    surface = [np.argwhere(m ^ ndimage.binary_erosion(m)) * np.array(SPACING) for m in (a, b)]
    distances, _ = cKDTree(surface[1]).query(surface[0])
    return float(np.percentile(distances, 95))


def test_hd95_is_the_larger_directed_95th_percentile_in_mm(case: tuple) -> None:
    image, gt, score = case
    result = finalise_volume(_served(score), image, gt, EvaluationSettings(hd95=True, min_component_voxels=3))
    pred, truth = result.pred, gt & result.counted
    expected = max(_directed_hd95(pred, truth), _directed_hd95(truth, pred))
    assert result.hd95 == pytest.approx(expected, rel=1e-5)
    assert result.metric_row()["hd95"] == result.hd95


def test_unlabelled_scan_has_a_prediction_and_no_metrics(case: tuple) -> None:
    image, _, score = case
    result = finalise_volume(_served(score), image, None, EvaluationSettings(threshold_policy="oracle"))
    assert isinstance(result, VolumeResult)
    assert result.threshold == 0.5  # no ground truth: the oracle falls back to the adaptive threshold
    assert result.scores is None
    assert math.isnan(result.lesion_ml)
    assert result.predicted_ml == pytest.approx(result.pred.sum() * np.prod(SPACING) / 1000)
    with pytest.raises(ValueError, match="unlabelled"):
        result.metric_row()


def test_ground_truth_on_another_grid_is_refused(case: tuple) -> None:
    image, gt, score = case
    with pytest.raises(ValueError, match=r"Ground truth has shape \(20, 18, 11\).*scan\.nii\.gz"):
        finalise_volume(_served(score), image, gt[:, :, :11], EvaluationSettings())
