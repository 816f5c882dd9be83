# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Per-volume metrics as anomalib metrics, so they join the usual results table through anomalib's ``Evaluator``.

Each slice contributes its confusion counts ``[TP, FP, TN, FN]`` (of ``pred_mask`` against ``gt_mask``, at model
resolution) and its ``volume_index``; at ``compute`` the counts are summed per volume and MONAI's confusion-matrix
metric turns them into one value per volume, averaged over the volumes where it is defined. The state is one small
row per slice (``dist_reduce_fx="cat"``, so it gathers across processes), never a map.

Rules, shared with :class:`~anomalib_medclip.volumes.VolumeEvaluator`:

- counted pixels: by default only those inside the brain, read from the batch's ``brain_mask`` field, which the
  slice datasets compute with :func:`~anomalib_medclip.data.nifti.brain_mask` on the source intensities (the rule
  of the 3D evaluation) and which is resized here to the prediction's size with nearest neighbours, exactly as the
  pre-processor resizes ``gt_mask``; batches without ``brain_mask`` are then skipped (the metric is absent rather
  than counted on another rule); ``brain_only=False`` counts every pixel;
- a volume with an empty ground truth is excluded from Dice (``ignore_empty=True``; with ``False`` it scores 1 when
  the prediction is empty too, else 0, as MONAI's ``DiceMetric``) and counts in specificity;
- sensitivity and PPV skip volumes where they are undefined (zero denominator).

These numbers use the post-processed ``pred_mask`` at model resolution and the anomalib threshold; the NIfTI-level
numbers of ``VolumeEvaluator`` (native resolution, threshold policies, 3D post-processing) are the reference.
Batches without ``volume_index`` (plain 2D data) are skipped (``strict=False``) and the metric is then absent.

Example:
    >>> from anomalib.metrics import Evaluator
    >>> evaluator = Evaluator(test_metrics=volume_metrics())
    >>> [metric.name for metric in evaluator.test_metrics]
    ['volume_Dice', 'volume_Sensitivity', 'volume_Specificity', 'volume_PPV']
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from anomalib.metrics import AnomalibMetric
from monai.metrics import compute_confusion_matrix_metric
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchvision.transforms.v2.functional import resize_mask

__all__ = ["VolumeStat", "VolumeStatistic", "volume_metrics"]

VolumeStatistic = Literal["dice", "sensitivity", "specificity", "ppv"]
_MONAI_NAMES = {"dice": "f1 score", "sensitivity": "sensitivity", "specificity": "specificity", "ppv": "precision"}
_DISPLAY = {"dice": "Dice", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV"}


class _VolumeStat(Metric):
    """Per-volume statistic from per-slice confusion counts (torchmetrics part)."""

    full_state_update = False

    def __init__(
        self,
        statistic: VolumeStatistic = "dice",
        brain_only: bool = True,
        ignore_empty: bool = True,
        **kwargs: Any,
    ) -> None:
        if statistic not in _MONAI_NAMES:
            msg = f"statistic='{statistic}'; expected one of {sorted(_MONAI_NAMES)}."
            raise ValueError(msg)
        super().__init__(**kwargs)
        self.statistic, self.brain_only, self.ignore_empty = statistic, brain_only, ignore_empty
        self.add_state("counts", default=[], dist_reduce_fx="cat")  # rows: volume_index, TP, FP, TN, FN

    def update(
        self,
        pred_mask: torch.Tensor,
        gt_mask: torch.Tensor,
        volume_index: torch.Tensor,
        brain_mask: torch.Tensor | None = None,
    ) -> None:
        """Add the confusion counts of a batch of slices ``(B, H, W)`` (``brain_mask`` at any size)."""
        pred, gt = pred_mask.bool().flatten(1), gt_mask.bool().view(pred_mask.shape).flatten(1)
        keep = torch.ones_like(pred)
        if self.brain_only and brain_mask is not None:
            keep = resize_mask(brain_mask.bool().view(len(pred), *brain_mask.shape[-2:]), list(pred_mask.shape[-2:]))
            keep = keep.flatten(1)
        tp, fp = (pred & gt & keep).sum(1), (pred & ~gt & keep).sum(1)
        tn, fn = (~pred & ~gt & keep).sum(1), (~pred & gt & keep).sum(1)
        self.counts.append(torch.stack([volume_index.to(tp), tp, fp, tn, fn], dim=1))

    def compute(self) -> torch.Tensor:
        """Mean over volumes of the statistic (NaN when no volume defines it)."""
        rows = dim_zero_cat(self.counts).long()
        volumes, inverse = torch.unique(rows[:, 0], return_inverse=True)
        matrix = torch.zeros(len(volumes), 4, dtype=torch.long, device=rows.device).index_add_(0, inverse, rows[:, 1:])
        values = compute_confusion_matrix_metric(_MONAI_NAMES[self.statistic], matrix.float())
        if self.statistic == "dice":
            empty = matrix[:, 0] + matrix[:, 3] == 0  # no lesion voxel in the volume
            fallback = torch.where(matrix[:, 1] == 0, 1.0, 0.0) if not self.ignore_empty else torch.nan
            values = torch.where(empty, fallback, values)
        return values.nanmean()


class VolumeStat(AnomalibMetric, _VolumeStat):
    """Per-volume Dice, sensitivity, specificity or PPV as an anomalib metric, named ``volume_<Statistic>``.

    Args:
        statistic: ``"dice"``, ``"sensitivity"``, ``"specificity"`` or ``"ppv"``.
        brain_only: count only pixels inside the brain (see the module docstring).
        ignore_empty: exclude volumes with an empty ground truth from Dice.
        fields: batch fields; ``brain_mask`` is only read when ``brain_only``.
        prefix: name prefix.
        strict: ``False`` skips batches without these fields (non-volumetric data).
        **kwargs: passed to ``torchmetrics.Metric``.
    """

    def __init__(
        self,
        statistic: VolumeStatistic = "dice",
        brain_only: bool = True,
        ignore_empty: bool = True,
        fields: list[str] | None = None,
        prefix: str = "volume_",
        strict: bool = False,
        **kwargs: Any,
    ) -> None:
        fields = fields or ["pred_mask", "gt_mask", "volume_index", *(["brain_mask"] if brain_only else [])]
        super().__init__(
            fields=fields,
            prefix=prefix,
            strict=strict,
            statistic=statistic,
            brain_only=brain_only,
            ignore_empty=ignore_empty,
            **kwargs,
        )
        self.name = prefix + _DISPLAY[statistic]


def volume_metrics(brain_only: bool = True, ignore_empty: bool = True) -> list[AnomalibMetric]:
    """Per-volume Dice, sensitivity, specificity and PPV for ``Evaluator(test_metrics=[..., *volume_metrics()])``."""
    return [VolumeStat(s, brain_only=brain_only, ignore_empty=ignore_empty) for s in _MONAI_NAMES]
