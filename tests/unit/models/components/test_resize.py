# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The exported antialiased bicubic resize equals torchvision's (the Engine loops'), at any input size."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode, Resize

from anomalib_medclip.models.components.resize import bicubic_antialias_weights, resize_bicubic_antialias

SIZES = [((48, 48), (32, 32)), ((512, 480), (224, 224)), ((20, 33), (32, 32)), ((240, 155), (336, 336))]


@pytest.mark.parametrize(("size_in", "size_out"), [*SIZES, ((32, 32), (32, 32))])
def test_equals_torchvisions_antialiased_bicubic_resize(size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
    images = torch.rand(2, 3, *size_in, generator=torch.Generator().manual_seed(0))
    expected = Resize(size_out, interpolation=InterpolationMode.BICUBIC, antialias=True)(images)
    torch.testing.assert_close(resize_bicubic_antialias(images, size_out), expected, atol=2e-6, rtol=0)


def test_weights_are_keys_cubic_normalised_and_the_identity_at_scale_one() -> None:
    torch.testing.assert_close(bicubic_antialias_weights(5, 5, torch.device("cpu")), torch.eye(5))
    weights = bicubic_antialias_weights(8, 4, torch.device("cpu"))  # shrink by 2: taps at (j + 0.5 - 2i - 1) / 2
    distance = (torch.arange(8) + 0.5 - 2 * (torch.arange(4)[:, None] + 0.5)).abs() / 2
    keys = torch.where(distance < 1, 1.5 * distance**3 - 2.5 * distance**2 + 1, 0.0)
    keys = torch.where(
        (distance >= 1) & (distance < 2), -0.5 * distance**3 + 2.5 * distance**2 - 4 * distance + 2, keys
    )
    torch.testing.assert_close(weights, keys / keys.sum(dim=1, keepdim=True))


def test_exported_with_dynamic_height_and_width_resizes_other_sizes_alike() -> None:
    class Module(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return resize_bicubic_antialias(images, (32, 32))

    height, width = torch.export.Dim("height", min=8, max=1024), torch.export.Dim("width", min=8, max=1024)
    program = torch.export.export(Module(), (torch.rand(1, 3, 48, 48),), dynamic_shapes=({2: height, 3: width},))
    for size in SIZES:
        images = torch.rand(1, 3, *size[0], generator=torch.Generator().manual_seed(1))
        expected = Resize((32, 32), interpolation=InterpolationMode.BICUBIC, antialias=True)(images)
        torch.testing.assert_close(program.module()(images), expected, atol=2e-6, rtol=0)
