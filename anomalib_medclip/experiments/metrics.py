# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Image accuracy as an anomalib metric (the cross-modal study reports accuracy next to image AUROC).

anomalib 2.7 ships AUROC, F1 and friends but no accuracy. ``Accuracy(fields=["pred_label", "gt_label"],
prefix="image_")`` logs ``image_Accuracy``: the fraction of test images whose predicted label (anomalib's
F1-adaptive threshold learnt on the validation split, applied by the PostProcessor) equals the ground truth.

Example:
    >>> metric = Accuracy(fields=["pred_label", "gt_label"], prefix="image_")
    >>> metric.name
    'image_Accuracy'
"""

from __future__ import annotations

from anomalib.metrics import AnomalibMetric
from torchmetrics.classification import BinaryAccuracy

__all__ = ["Accuracy"]


class Accuracy(AnomalibMetric, BinaryAccuracy):  # type: ignore[misc]
    """torchmetrics ``BinaryAccuracy`` fed from batch fields (``pred_label`` against ``gt_label``)."""
