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
from monai.metrics import compute_confusion_matrix_metric, compute_hausdorff_distance, get_confusion_matrix
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

    def update(self, preds: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add voxels: scores and binary labels of the same shape."""
        scores = torch.as_tensor(preds).to(self.thresholds).reshape(-1).clamp(0, 1)
        labels = torch.as_tensor(target).reshape(-1).bool().to(scores.device)
        bins = torch.searchsorted(self.thresholds, scores, right=True) - 1  # last threshold <= score
        size = len(self.thresholds)
        histograms = [torch.bincount(bins[mask], minlength=size) for mask in (~labels, labels)]
        for truth, histogram in enumerate(histograms):  # truth 0 = negative, 1 = positive voxels
            above = histogram.flip(0).cumsum(0).flip(0)  # voxels with score >= threshold k
            self.confmat[:, truth, 1] += above
            self.confmat[:, truth, 0] += histogram.sum() - above

    def compute(self) -> dict[str, torch.Tensor]:
        """``voxel_auroc`` and ``voxel_f1_max`` (NaN when either class is missing)."""
        negatives, positives = self.confmat[0].sum(1)
        if not positives or not negatives:
            nan = torch.tensor(float("nan"))
            return {"voxel_auroc": nan, "voxel_f1_max": nan}
        tp, fp, fn = self.confmat[:, 1, 1], self.confmat[:, 0, 1], self.confmat[:, 1, 0]
        f1 = 2 * tp / (2 * tp + fp + fn)  # defined at every threshold (positives exist): 0 where nothing is predicted
        return {"voxel_auroc": super().compute(), "voxel_f1_max": f1.max().float()}
