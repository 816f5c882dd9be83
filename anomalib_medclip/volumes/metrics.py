# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Per-volume and voxel-level metrics of stacked 3D predictions.

Per volume (MONAI's confusion-matrix metrics on the voxels that count): Dice (= F1 of the voxels), sensitivity,
specificity and PPV. Rules, as in MONAI: a ratio with a zero denominator is NaN and means "undefined", which
averages skip. On top of that, a volume with an empty ground truth gets ``dice = NaN`` (excluded from the Dice mean)
while it still counts in specificity. Which voxels count is the caller's choice: by default only those inside the
brain (source image > 0).

Voxel AUROC and F1-max over all counted voxels of all volumes are binned (a fixed number of thresholds), so their
memory does not grow with the number of voxels. The anomaly maps are anomalib's normalised maps,
in [0, 1] (the adaptive threshold maps to 0.5), which is what binning over [0, 1] needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric, get_confusion_matrix

__all__ = ["VolumeScores", "VoxelCurves", "dice_2d_mean", "volume_scores"]


@dataclass(frozen=True)
class VolumeScores:
    """Metrics of one volume (NaN = undefined, see the module docstring)."""

    dice: float
    sensitivity: float
    specificity: float
    ppv: float
    lesion_voxels: int
    predicted_voxels: int


def volume_scores(pred: np.ndarray, gt: np.ndarray, counted: np.ndarray | None = None) -> VolumeScores:
    """Dice, sensitivity, specificity and PPV of a binary prediction against the ground truth.

    Args:
        pred: predicted mask, any shape (``HW[D]``).
        gt: ground-truth mask, same shape.
        counted: voxels that count (e.g. the brain); ``None`` counts all.

    Returns:
        :class:`VolumeScores`; ``dice`` is NaN when the counted ground truth is empty.
    """
    if pred.shape != gt.shape or (counted is not None and counted.shape != gt.shape):
        shapes = (pred.shape, gt.shape, None if counted is None else counted.shape)
        msg = f"Prediction, ground truth and counted-voxel masks must have one shape, got {shapes}."
        raise ValueError(msg)
    keep = np.ones(gt.shape, bool) if counted is None else counted.astype(bool)
    y_pred = torch.from_numpy(pred[keep].astype(np.float32)).view(1, 1, -1)
    y = torch.from_numpy(gt[keep].astype(np.float32)).view(1, 1, -1)
    matrix = get_confusion_matrix(y_pred, y, include_background=True)
    values = {
        name: float(compute_confusion_matrix_metric(name, matrix).item())
        for name in ("f1 score", "sensitivity", "specificity", "precision")
    }
    lesion = int(y.sum())
    return VolumeScores(
        dice=values["f1 score"] if lesion else float("nan"),
        sensitivity=values["sensitivity"],
        specificity=values["specificity"],
        ppv=values["precision"],
        lesion_voxels=lesion,
        predicted_voxels=int(y_pred.sum()),
    )


def dice_2d_mean(pred: np.ndarray, gt: np.ndarray, counted: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean 2D Dice over the axial slices (last axis) whose counted ground truth is not empty.

    Returns:
        The mean (NaN if no slice has a lesion) and the per-slice Dice ``(Z,)`` (NaN for lesion-free slices).
    """
    keep = np.ones(gt.shape, bool) if counted is None else counted.astype(bool)
    p, g = (pred & keep).reshape(-1, pred.shape[-1]), (gt & keep).reshape(-1, gt.shape[-1])
    inter, size = (p & g).sum(0), p.sum(0) + g.sum(0)
    per_slice = np.where(g.any(0), 2 * inter / np.maximum(size, 1), np.nan)
    return (float(np.nanmean(per_slice)) if g.any() else float("nan")), per_slice


class VoxelCurves:
    """Binned voxel AUROC and F1-max accumulated volume by volume, in constant memory.

    Two histograms (positive and negative voxels) over ``thresholds`` evenly spaced thresholds in [0, 1] hold the
    whole state; a voxel is predicted positive at threshold ``t`` when its score is ``>= t`` (as in torchmetrics'
    binned curves). torchmetrics' own binned ``BinaryAUROC`` computes the same numbers but compares every voxel with
    every threshold, which takes minutes for a few million voxels on a CPU; ``np.bincount`` takes milliseconds.

    Args:
        thresholds: number of evenly spaced thresholds in [0, 1].
    """

    def __init__(self, thresholds: int = 1000) -> None:
        if thresholds < 2:
            msg = f"thresholds={thresholds}; expected at least 2."
            raise ValueError(msg)
        self.thresholds = thresholds
        self._edges = np.linspace(0, 1, thresholds, dtype=np.float32)  # torchmetrics' threshold grid
        self.positives = np.zeros(thresholds, np.int64)
        self.negatives = np.zeros(thresholds, np.int64)

    def update(self, scores: np.ndarray, gt: np.ndarray) -> None:
        """Add voxels: scores (clipped to [0, 1]) and binary labels of the same shape."""
        values = np.clip(np.asarray(scores, np.float32).reshape(-1), 0, 1)
        bins = np.searchsorted(self._edges, values, side="right") - 1  # last threshold <= score
        labels = np.asarray(gt, bool).reshape(-1)
        self.positives += np.bincount(bins[labels], minlength=self.thresholds)
        self.negatives += np.bincount(bins[~labels], minlength=self.thresholds)

    def compute(self) -> dict[str, float]:
        """``voxel_auroc`` and ``voxel_f1_max`` (NaN when either class is missing)."""
        n_pos, n_neg = int(self.positives.sum()), int(self.negatives.sum())
        if not n_pos or not n_neg:
            return {"voxel_auroc": float("nan"), "voxel_f1_max": float("nan")}
        tp = np.cumsum(self.positives[::-1])[::-1]  # voxels with score >= threshold k
        fp = np.cumsum(self.negatives[::-1])[::-1]
        tpr = np.concatenate([[0.0], (tp / n_pos)[::-1]])
        fpr = np.concatenate([[0.0], (fp / n_neg)[::-1]])
        f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
        return {"voxel_auroc": float(np.trapezoid(tpr, fpr)), "voxel_f1_max": float(f1.max())}
