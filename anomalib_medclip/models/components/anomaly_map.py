# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Turning per-layer patch scores into a pixel anomaly map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["layer_maps_to_image"]


def layer_maps_to_image(patch_scores: Sequence[torch.Tensor], image_size: int) -> torch.Tensor:
    """Average per-layer patch scores and upsample them to the input size.

    Args:
        patch_scores: one ``(B, P)`` tensor per layer, ``P`` a square number of patches in row-major order.
        image_size: output side in pixels.

    Returns:
        Anomaly map ``(B, 1, image_size, image_size)`` (bilinear, ``align_corners=False``).

    Example:
        >>> layer_maps_to_image([torch.ones(2, 4), torch.zeros(2, 4)], 8).shape
        torch.Size([2, 1, 8, 8])
    """
    if not patch_scores:
        msg = "At least one layer of patch scores is needed to build an anomaly map."
        raise ValueError(msg)
    stacked = torch.stack(list(patch_scores)).mean(dim=0)
    grid = round(stacked.shape[-1] ** 0.5)
    if grid * grid != stacked.shape[-1]:
        msg = f"Patch scores have {stacked.shape[-1]} entries per image, not a square grid."
        raise ValueError(msg)
    maps = stacked.reshape(-1, 1, grid, grid)
    return F.interpolate(maps, size=(image_size, image_size), mode="bilinear", align_corners=False)
