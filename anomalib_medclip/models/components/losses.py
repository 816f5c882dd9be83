# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Segmentation losses on two-class (normal, anomalous) probability maps, built on MONAI.

``focal(map) + dice(p_anomalous, gt) + dice(p_normal, 1 - gt)``: MONAI's focal loss and its Dice loss over both
classes (``include_background=True``) give exactly these terms (the AnomalyCLIP and AdaCLIP recipe). With
``normal_dice=False`` the Dice term covers the anomalous class only (APRIL-GAN's ``focal + dice(p_anomalous, gt)``).
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss, FocalLoss
from torch import nn

__all__ = ["MapLoss"]


class MapLoss(nn.Module):
    """Focal + Dice loss between class probabilities ``(B, 2, H, W)`` and a mask ``(B, H, W)``.

    Args:
        gamma: focusing parameter of the focal term.
        normal_dice: also apply Dice to the normal class against ``1 - mask`` (two-sided); ``False`` keeps the
            anomalous class only.
    """

    def __init__(self, gamma: float = 2.0, normal_dice: bool = True) -> None:
        super().__init__()
        self.focal = FocalLoss(gamma=gamma, to_onehot_y=True, use_softmax=True, reduction="none")
        self.dice = DiceLoss(to_onehot_y=True, include_background=normal_dice, softmax=False)

    def forward(self, probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Loss of probabilities that already sum to one over dim 1 (so no extra softmax here)."""
        target = mask.float().reshape(mask.shape[0], 1, *probs.shape[-2:])
        # MONAI applies a softmax to its input: log-probabilities give the probabilities back exactly. Its per-class
        # terms are summed over classes, then averaged over pixels (MONAI's "mean" would also average over classes).
        focal = self.focal(probs.clamp_min(1e-8).log(), target).sum(dim=1).mean()
        return focal + self.dice(probs, target)
