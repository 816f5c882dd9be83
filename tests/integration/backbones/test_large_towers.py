# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The layer-wise towers of a large architecture (24 layers, quick GELU, 336 px) equal open_clip's encoders.

Not an Engine run, but too heavy for the unit lane (about 2 minutes and 2 GB on 2 CPU cores); the same check on
ViT-B-16 and the tiny test architecture is in ``tests/unit/backbones/test_clip.py``.
"""

from __future__ import annotations

import pytest
import torch

from anomalib_medclip.backbones import CLIPBackbone

TEXTS = ["a photo of a normal brain MRI scan", "a photo of an anomalous brain MRI scan", "x"]


@pytest.mark.parametrize("name", ["ViT-L-14-336-quickgelu"])
def test_layerwise_towers_equal_open_clip_encoders(name: str) -> None:
    backbone = CLIPBackbone(name, None)
    images = torch.randn(2, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(0))
    tokens = backbone.tokenize(TEXTS)
    with torch.no_grad():
        image_diff = (backbone.encode_image(images).pooled - backbone.clip.encode_image(images)).abs().max()
        text_diff = (backbone.encode_text(tokens) - backbone.clip.encode_text(tokens)).abs().max()
        ref = backbone.clip.visual.forward_intermediates(images, indices=[5], output_fmt="NLC", intermediates_only=True)
        tokens6 = backbone.encode_image(images, out_layers=(6,)).patch_tokens[0]
    assert image_diff < 1e-5
    assert text_diff < 1e-5
    assert (tokens6 - ref["image_intermediates"][0]).abs().max() < 1e-5
    assert backbone.info.quick_gelu is name.endswith("quickgelu")
