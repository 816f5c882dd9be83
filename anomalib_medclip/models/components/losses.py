# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Segmentation and classification losses on two-class (normal, anomalous) probabilities, built on MONAI.

:class:`MapLoss` is ``focal(map) + dice(p_anomalous, gt) [+ dice(p_normal, 1 - gt)]``. MONAI's focal loss and its
Dice loss over both classes (``include_background=True``) give these terms; ``class_reduction`` says whether the two
Dice terms are averaged (MONAI's default) or summed, and ``dice_smooth`` is the constant added to the numerator and
the denominator. The reference methods (AnomalyCLIP, AdaCLIP, APRIL-GAN share one ``loss.py``) sum the Dice terms
with a constant of 1: ``MapLoss.reference(normal_dice=...)`` builds that. :func:`focal_loss` is the same focal term
for image-level probabilities ``(B, 2)`` (AdaCLIP's classification loss).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss
from torch import nn

__all__ = ["MapLoss", "focal_loss"]


def focal_loss(
    probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean focal loss ``-(1 - p_t)^gamma log p_t`` of probabilities ``(B, 2, ...)`` against class ids ``(B, ...)``.

    ``label_smoothing=s > 0`` is the originals' ``FocalLoss(smooth=s)`` (MVFA's ``loss.py``): one-hot targets clamped
    to ``[s / (C - 1), 1 - s]`` and ``p_t = sum(target * p) + s``; MONAI's focal loss has no such term, so it is
    written out here.
    """
    if label_smoothing:
        classes = probs.shape[1]
        ids = target.long().reshape(target.shape[0], *probs.shape[2:])
        one_hot = F.one_hot(ids, classes).movedim(-1, 1).to(probs.dtype)
        one_hot = one_hot.clamp(label_smoothing / (classes - 1), 1.0 - label_smoothing)
        pt = (one_hot * probs).sum(dim=1) + label_smoothing
        return (-((1 - pt) ** gamma) * pt.log()).mean()
    focal = FocalLoss(gamma=gamma, to_onehot_y=True, use_softmax=True, reduction="none")
    # MONAI applies a softmax to its input: log-probabilities give the probabilities back exactly. Its per-class
    # terms are summed over classes, then averaged over pixels (MONAI's "mean" would also average over classes).
    target = target.float().reshape(target.shape[0], 1, *probs.shape[2:])
    return focal(probs.clamp_min(1e-8).log(), target).sum(dim=1).mean()


class MapLoss(nn.Module):
    """Focal + Dice loss between class probabilities ``(B, 2, H, W)`` and a mask ``(B, H, W)``.

    Args:
        gamma: focusing parameter of the focal term.
        normal_dice: also apply Dice to the normal class against ``1 - mask`` (two-sided); ``False`` keeps the
            anomalous class only.
        dice_smooth: constant added to the Dice numerator and denominator.
        class_reduction: ``"mean"`` or ``"sum"`` of the two Dice terms when ``normal_dice``.
        focal_smoothing: label smoothing of the focal term (see :func:`focal_loss`; MVFA's ``1e-5``).
    """

    def __init__(
        self,
        gamma: float = 2.0,
        normal_dice: bool = True,
        dice_smooth: float = 1e-5,
        class_reduction: Literal["mean", "sum"] = "mean",
        focal_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.gamma, self.focal_smoothing = gamma, focal_smoothing
        self.class_reduction = class_reduction
        self.dice = DiceLoss(
            to_onehot_y=True, include_background=normal_dice, softmax=False, smooth_nr=dice_smooth,
            smooth_dr=dice_smooth, reduction="none",
        )  # fmt: skip

    @classmethod
    def reference(cls, normal_dice: bool, focal_smoothing: float = 0.0) -> MapLoss:
        """The originals' loss: Dice terms summed, smoothing constant 1 (and their focal smoothing if given)."""
        return cls(normal_dice=normal_dice, dice_smooth=1.0, class_reduction="sum", focal_smoothing=focal_smoothing)

    def forward(self, probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Loss of probabilities that already sum to one over dim 1 (so no extra softmax here)."""
        target = mask.float().reshape(mask.shape[0], 1, *probs.shape[-2:])
        dice = self.dice(probs, target).flatten(1)  # (B, classes)
        dice = dice.sum(dim=1) if self.class_reduction == "sum" else dice.mean(dim=1)
        return focal_loss(probs, target, self.gamma, self.focal_smoothing) + dice.mean()
