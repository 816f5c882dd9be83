# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small random-initialised CLIP backbones and generated image folders (no network, no weights)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("ANOMALIB_MEDCLIP_AUTOLOAD", "1")

SMALL = {"backbone": "ViT-B-16", "pretrained": None, "image_size": 32}


@pytest.fixture(scope="session")
def small_backbone():
    """ViT-B-16 at 32 px (2x2 patches), random weights: real architecture, fast on CPU."""
    from anomalib_medclip.backbones import CLIPBackbone

    return CLIPBackbone("ViT-B-16", None, image_size=32)


def write_image_folder(root: Path, n_normal: int = 6, n_abnormal: int = 6, size: int = 48, seed: int = 0) -> Path:
    """Grey images with bright square 'lesions' and their masks, in anomalib Folder layout."""
    rng = np.random.default_rng(seed)
    for sub in ("good", "bad", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_normal):
        img = (rng.normal(0.4, 0.05, (size, size)) * 255).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).convert("RGB").save(root / "good" / f"n{i:03d}.png")
    for i in range(n_abnormal):
        img = rng.normal(0.4, 0.05, (size, size))
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size - 16, 2)
        img[y : y + 12, x : x + 12] = 0.95
        mask[y : y + 12, x : x + 12] = 255
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).convert("RGB").save(root / "bad" / f"a{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"a{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A tiny segmentation dataset in anomalib Folder layout."""
    return write_image_folder(tmp_path / "folder")
