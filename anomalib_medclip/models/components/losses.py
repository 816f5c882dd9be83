# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Segmentation and classification losses on two-class (normal, anomalous) probabilities, built on MONAI.

:class:`MapLoss` is ``focal(map) + dice(p_anomalous, gt) [+ dice(p_normal, 1 - gt)]``. MONAI's focal loss and its
Dice loss over both classes (``include_background=True``) give these terms; ``class_reduction`` says whether the two
Dice terms are averaged (MONAI's default) or summed, and ``dice_smooth`` is the constant added to the numerator and
the denominator. The reference methods (AnomalyCLIP, AdaCLIP, APRIL-GAN share one ``loss.py``) sum the Dice terms
with a constant of 1: ``MapLoss.reference(normal_dice=...)`` builds that. :func:`focal_loss` is the same focal term
for image-level probabilities ``(B, 2)`` (AdaCLIP's classification loss). The originals' focal term also smooths its
labels (one-hot clamped to ``[s, 1 - s]`` and ``s`` added to ``p_t``, ``s = 1e-5``), which MONAI's does not;
``focal_smooth`` reproduces it where it matters: with saturated probabilities (AA-CLIP's ``100 * cos`` logits) it
bounds ``-log p_t`` and changes the gradients by far more than the smoothing constant.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss
from torch import nn

__all__ = ["MapLoss", "focal_loss"]


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, smooth: float = 0.0) -> torch.Tensor:
    """Mean focal loss ``-(1 - p_t)^gamma log p_t`` of probabilities ``(B, 2, ...)`` against class ids ``(B, ...)``.

    ``smooth > 0``: the originals' label smoothing, ``p_t = sum_c clamp(onehot, s, 1 - s)_c p_c + s`` (two classes).
    """
    if smooth:
        onehot = F.one_hot(target.long().reshape(target.shape[0], *probs.shape[2:]), probs.shape[1]).movedim(-1, 1)
        p_t = (onehot.to(probs.dtype).clamp(smooth / (probs.shape[1] - 1), 1 - smooth) * probs).sum(dim=1) + smooth
        return (-((1 - p_t) ** gamma) * p_t.log()).mean()
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
        focal_smooth: the originals' label smoothing of the focal term (see :func:`focal_loss`; 0 = MONAI's term).
    """

    def __init__(
        self,
        gamma: float = 2.0,
        normal_dice: bool = True,
        dice_smooth: float = 1e-5,
        class_reduction: Literal["mean", "sum"] = "mean",
        focal_smooth: float = 0.0,
    ) -> None:
        super().__init__()
        self.gamma, self.focal_smooth = gamma, focal_smooth
        self.class_reduction = class_reduction
        self.dice = DiceLoss(
            to_onehot_y=True, include_background=normal_dice, softmax=False, smooth_nr=dice_smooth,
            smooth_dr=dice_smooth, reduction="none",
        )  # fmt: skip

    @classmethod
    def reference(cls, normal_dice: bool, focal_smooth: float = 0.0) -> MapLoss:
        """The originals' loss: Dice terms summed, constant 1 (``focal_smooth=1e-5``: their focal term too)."""
        return cls(normal_dice=normal_dice, dice_smooth=1.0, class_reduction="sum", focal_smooth=focal_smooth)

    def forward(self, probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Loss of probabilities that already sum to one over dim 1 (so no extra softmax here)."""
        target = mask.float().reshape(mask.shape[0], 1, *probs.shape[-2:])
        dice = self.dice(probs, target).flatten(1)  # (B, classes)
        dice = dice.sum(dim=1) if self.class_reduction == "sum" else dice.mean(dim=1)
        return focal_loss(probs, target, self.gamma, self.focal_smooth) + dice.mean()
