# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small random-initialised CLIP backbones and generated image folders (no network, no weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network (read when huggingface_hub is imported)

from anomalib_medclip.demo import make_demo_images


@pytest.fixture(scope="session")
def small_backbone():
    """ViT-B-16 at 32 px (2x2 patches), random weights: real architecture, fast on CPU."""
    from anomalib_medclip.backbones import CLIPBackbone

    return CLIPBackbone("ViT-B-16", None, image_size=32)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A tiny segmentation dataset in anomalib Folder layout."""
    return make_demo_images(tmp_path / "folder", n_normal=6, n_abnormal=6, size=48)
