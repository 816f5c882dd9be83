# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Per-volume and voxel-level metrics of stacked 3D predictions.

Per volume (MONAI's confusion-matrix metrics on the voxels that count): Dice (= F1 of the voxels), sensitivity,
specificity and PPV. Rules, as in MONAI: a ratio with a zero denominator is NaN and means "undefined", which
averages skip. On top of that, a volume with an empty ground truth gets ``dice = NaN`` (excluded from the Dice mean)
while it still counts in specificity. Which voxels count is the caller's choice: by default only those inside the
brain (:func:`~anomalib_medclip.data.nifti.brain_mask`: source intensity > 0).

Voxel AUROC and F1-max over all counted voxels of all volumes are binned (a fixed number of thresholds), so their
memory does not grow with the number of voxels. The anomaly maps are anomalib's normalised maps,
in [0, 1] (the adaptive threshold maps to 0.5), which is what binning over [0, 1] needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric, compute_hausdorff_distance
from torchmetrics.classification import BinaryAUROC

__all__ = ["VolumeScores", "VoxelCurves", "dice_2d_mean", "hd95", "volume_scores"]


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
    keep = np.ones(gt.shape, bool) if counted is None else counted.astype(bool, copy=False)
    # MONAI's confusion matrix [TP, FP, TN, FN] (get_confusion_matrix's layout), counted without copying the voxels
    predicted, lesion = pred & keep, gt & keep
    tp, n_pred, n_gt = (int(np.count_nonzero(a)) for a in (predicted & lesion, predicted, lesion))
    fp, fn = n_pred - tp, n_gt - tp
    matrix = torch.tensor([[[tp, fp, int(np.count_nonzero(keep)) - tp - fp - fn, fn]]], dtype=torch.float64)
    values = {
        name: float(compute_confusion_matrix_metric(name, matrix).item())
        for name in ("f1 score", "sensitivity", "specificity", "precision")
    }
    return VolumeScores(
        dice=values["f1 score"] if n_gt else float("nan"),
        sensitivity=values["sensitivity"],
        specificity=values["specificity"],
        ppv=values["precision"],
        lesion_voxels=n_gt,
        predicted_voxels=n_pred,
    )


def dice_2d_mean(pred: np.ndarray, gt: np.ndarray, counted: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean 2D Dice over the axial slices (last axis) whose counted ground truth is not empty.

    Returns:
        The mean (NaN if no slice has a lesion) and the per-slice Dice ``(Z,)`` (NaN for lesion-free slices).
    """
    keep = np.ones(gt.shape, bool) if counted is None else counted.astype(bool, copy=False)
    p, g = pred & keep, gt & keep
    axes = tuple(range(gt.ndim - 1))
    inter, n_pred, n_gt = (np.count_nonzero(a, axis=axes) for a in (p & g, p, g))
    per_slice = np.where(n_gt > 0, 2 * inter / np.maximum(n_pred + n_gt, 1), np.nan)
    return (float(np.nanmean(per_slice)) if n_gt.any() else float("nan")), per_slice


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th-percentile Hausdorff distance in mm (MONAI), NaN when the prediction or the ground truth is empty."""
    if not pred.any() or not gt.any():
        return float("nan")
    y_pred, y = (torch.from_numpy(np.ascontiguousarray(m, dtype=bool))[None, None] for m in (pred, gt))
    return float(compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=list(spacing)))


class VoxelCurves(BinaryAUROC):
    """Binned voxel AUROC and F1-max over all counted voxels of all volumes, in constant memory.

    torchmetrics' binned ``BinaryAUROC`` state (a ``(thresholds, 2, 2)`` confusion matrix per evenly spaced threshold
    in [0, 1], a voxel being positive at threshold ``t`` when its score is ``>= t``, summed across processes) and its
    ``compute``; only ``update`` differs: torchmetrics compares every voxel with every threshold (minutes for a few
    million voxels on a CPU), here each voxel's score is located once among the sorted thresholds and the confusion
    matrices follow from cumulative histograms. Scores are clipped to [0, 1] (torchmetrics would apply a sigmoid to
    anything outside that range, which breaks binning); anomalib's normalised maps already lie there.

    Args:
        thresholds: number of evenly spaced thresholds in [0, 1].
        **kwargs: passed to ``torchmetrics.Metric`` (e.g. ``sync_on_compute=False`` when one process sees all voxels).
    """

    def __init__(self, thresholds: int = 1000, **kwargs: Any) -> None:
        if thresholds < 2:
            msg = f"thresholds={thresholds}; expected at least 2."
            raise ValueError(msg)
        super().__init__(thresholds=thresholds, **kwargs)

    chunk = 1 << 20  # voxels binned at a time: the temporaries stay a few MiB, reused, not freshly mapped per volume

    def update(self, preds: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add voxels: scores and binary labels of the same shape (binned in blocks of :attr:`chunk` voxels)."""
        scores, labels = torch.as_tensor(preds).reshape(-1), torch.as_tensor(target).reshape(-1)
        size = len(self.thresholds)
        counts = torch.zeros(2 * size, dtype=torch.long, device=self.thresholds.device)
        for start in range(0, len(scores), self.chunk):
            block = slice(start, start + self.chunk)
            counts += self._histogram(scores[block], labels[block])
        for truth, histogram in enumerate(counts.view(2, size)):  # truth 0 = negative, 1 = positive voxels
            above = histogram.flip(0).cumsum(0).flip(0)  # voxels with score >= threshold k
            self.confmat[:, truth, 1] += above
            self.confmat[:, truth, 0] += histogram.sum() - above

    def _histogram(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Counts ``(2 * thresholds,)`` of the last threshold <= each score, negatives first then positives."""
        scores = preds.to(self.thresholds).clamp(0, 1)
        labels = target.bool().to(scores.device)
        size, thresholds = len(self.thresholds), self.thresholds
        # last threshold <= score (searchsorted's answer): the evenly spaced grid gives it up to one step, corrected
        bins = (scores * (size - 1)).long().clamp_(0, size - 1)
        bins -= (thresholds[bins] > scores).long()
        bins += ((bins < size - 1) & (thresholds[(bins + 1).clamp_(max=size - 1)] <= scores)).long()
        return torch.bincount(bins + size * labels.long(), minlength=2 * size)

    def compute(self) -> dict[str, torch.Tensor]:
        """``voxel_auroc`` and ``voxel_f1_max`` (NaN when either class is missing)."""
        negatives, positives = self.confmat[0].sum(1)
        if not positives or not negatives:
            nan = torch.tensor(float("nan"))
            return {"voxel_auroc": nan, "voxel_f1_max": nan}
        tp, fp, fn = self.confmat[:, 1, 1], self.confmat[:, 0, 1], self.confmat[:, 1, 0]
        f1 = 2 * tp / (2 * tp + fp + fn)  # defined at every threshold (positives exist): 0 where nothing is predicted
        return {"voxel_auroc": super().compute(), "voxel_f1_max": f1.max().float()}
