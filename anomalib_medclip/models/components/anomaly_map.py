# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Turning per-layer patch scores into a pixel anomaly map, and smoothing it.

:class:`GaussianSmoothing` reproduces ``scipy.ndimage.gaussian_filter(map, sigma)`` (``truncate=4``, ``mode="reflect"``)
on batched tensors, on any device. The reference methods (AnomalyCLIP, AdaCLIP) smooth with scipy per image on the
CPU; anomalib's ``GaussianBlur2d`` pads with torch's ``reflect`` (whole-sample symmetric), which differs from scipy's
``reflect`` (half-sample symmetric) along the borders, so it cannot give their maps back exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GaussianSmoothing", "layer_maps_to_image", "quarter_layers", "upsample_patch_values"]


def quarter_layers(depth: int) -> tuple[int, ...]:
    """Layers at the quarters of a tower, the methods' default taps: (3, 6, 9, 12) for ViT-B, (6, 12, 18, 24) for ViT-L.

    Example:
        >>> quarter_layers(12), quarter_layers(24)
        ((3, 6, 9, 12), (6, 12, 18, 24))
    """
    return tuple(depth * k // 4 for k in range(1, 5))


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


def upsample_patch_values(values: torch.Tensor, size: int, *, align_corners: bool) -> torch.Tensor:
    """Values of patches on a square grid ``(B, P, C)`` -> bilinear maps ``(B, C, size, size)``.

    The reference methods differ in ``align_corners`` (APRIL-GAN and AdaCLIP: ``True``; AnomalyCLIP: ``False``).

    Example:
        >>> upsample_patch_values(torch.rand(2, 16, 3), 8, align_corners=True).shape
        torch.Size([2, 3, 8, 8])
    """
    batch, patches, channels = values.shape
    grid = round(patches**0.5)
    if grid * grid != patches:
        msg = f"Patch values have {patches} entries per image, not a square grid."
        raise ValueError(msg)
    maps = values.transpose(1, 2).reshape(batch, channels, grid, grid)
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=align_corners)


def _reflect_indices(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a ``size``-long axis padded by ``radius`` with scipy's ``reflect`` (``d c b a | a b c d``)."""
    index = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


class GaussianSmoothing(nn.Module):
    """Separable Gaussian smoothing of maps ``(B, C, H, W)``, equal to scipy's ``gaussian_filter`` per map.

    Args:
        sigma: standard deviation in pixels; ``0`` makes the module the identity.
        truncate: the kernel extends ``int(truncate * sigma + 0.5)`` pixels on each side (scipy's default 4).

    Example:
        >>> GaussianSmoothing(2.0)(torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, sigma: float, truncate: float = 4.0) -> None:
        super().__init__()
        if sigma < 0 or not math.isfinite(sigma):
            msg = f"Gaussian sigma must be a finite number >= 0, got {sigma}."
            raise ValueError(msg)
        self.sigma = float(sigma)
        self.radius = int(truncate * sigma + 0.5)
        offsets = torch.arange(-self.radius, self.radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2) if sigma > 0 else torch.ones(1, dtype=torch.float64)
        self.register_buffer("kernel", (kernel / kernel.sum()).float(), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Smooth every channel of every map independently."""
        if self.radius == 0:
            return maps
        batch, channels, height, width = maps.shape
        x = maps.reshape(batch * channels, 1, height, width)
        kernel = self.kernel.to(x.dtype)
        x = x[..., _reflect_indices(height, self.radius, x.device), :]
        x = F.conv2d(x, kernel.view(1, 1, -1, 1))
        x = x[..., _reflect_indices(width, self.radius, x.device)]
        x = F.conv2d(x, kernel.view(1, 1, 1, -1))
        return x.reshape(batch, channels, height, width)
