# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Antialiased bicubic resizing as two matrix products: the Engine's resize in a form every runtime computes alike.

torchvision's ``Resize(antialias=True, interpolation=BICUBIC)`` (PyTorch's ``_upsample_bicubic2d_aa``) exports to
ONNX as ``Resize`` with ``antialias=1``. ONNX Runtime computes that as PyTorch does (4e-7), but OpenVINO's CPU
plugin does not: its antialiased cubic ``Interpolate`` moved a tiny model's image scores by 0.04. The resize is linear
and separable, so it is written here as ``rows @ image @ columns.T`` with PyTorch's weights (Keys cubic, a = -0.5,
the support widened by the scale when shrinking, each output's weights normalised), computed in the graph from the
input size: the input height and width stay dynamic. Within 1e-6 of PyTorch (tested).
"""

from __future__ import annotations

import torch

__all__ = ["bicubic_antialias_weights", "resize_bicubic_antialias"]

_A = -0.5  # the Keys coefficient of PyTorch's antialiased bicubic filter (its non-antialiased one uses -0.75)


def _keys_cubic(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def bicubic_antialias_weights(size_in: int | torch.SymInt, size_out: int, device: torch.device) -> torch.Tensor:
    """``(size_out, size_in)`` float32 weights of PyTorch's antialiased bicubic resize along one axis."""
    taps = torch.arange(size_in, dtype=torch.float32, device=device)
    scale = torch.ones((), dtype=torch.float32, device=device) * size_in / size_out  # a tensor: symbolic sizes stay so
    centres = scale * (torch.arange(size_out, dtype=torch.float32, device=device) + 0.5)
    weights = _keys_cubic((taps[None, :] - centres[:, None] + 0.5) / scale.clamp(min=1.0))
    return weights / weights.sum(dim=1, keepdim=True)


def resize_bicubic_antialias(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images`` ``(..., H, W)`` resized to ``size`` as torchvision's antialiased bicubic ``Resize`` resizes them."""
    rows = bicubic_antialias_weights(images.shape[-2], size[0], images.device).to(images.dtype)
    columns = bicubic_antialias_weights(images.shape[-1], size[1], images.device).to(images.dtype)
    return rows @ (images @ columns.T)
