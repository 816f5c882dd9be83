# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``DemoImages``: a small generated 2D image set so that the README's main job runs offline on a fresh machine.

Each image is a synthetic axial "brain slice" (an elliptic head with tissue texture on a dark background); anomalous
images carry one to three bright round lesions with their masks. The set is written deterministically from a seed in
anomalib's Folder layout (``good/``, ``bad/``, ``masks/``) on first use, atomically (temporary folder + rename), and
served by anomalib's own ``Folder`` datamodule. It is a smoke-test set, not a benchmark.

Example:
    >>> import tempfile
    >>> root = make_demo_images(tempfile.mkdtemp() + "/demo", n_normal=2, n_abnormal=2, size=32)
    >>> sorted(p.name for p in root.iterdir())
    ['bad', 'good', 'masks']
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from anomalib.data import Folder
from PIL import Image

__all__ = ["DemoImages", "make_demo_images"]


def _slice(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    a, b = rng.uniform(0.7, 0.85), rng.uniform(0.8, 0.95)
    head = (xx / a) ** 2 + (yy / b) ** 2 <= 1
    texture = 0.45 + 0.08 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy) + rng.normal(0, 0.03, (size, size))
    return np.where(head, texture, 0.02)


def _lesions(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros_like(image, dtype=bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        radius = rng.uniform(0.05, 0.12) * size
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        image = np.where(blob, rng.uniform(0.85, 0.95), image)
        mask |= blob
    return image, mask


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


def make_demo_images(root: str | Path, n_normal: int = 48, n_abnormal: int = 32, size: int = 96, seed: int = 0) -> Path:
    """Write the demo set under ``root`` unless it is already there; return ``root``."""
    root = Path(root)
    if (root / "good").is_dir() and (root / "bad").is_dir() and (root / "masks").is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for sub in ("good", "bad", "masks"):
            (tmp / sub).mkdir()
        for i in range(n_normal):
            _save(_slice(rng, size), tmp / "good" / f"normal_{i:03d}.png")
        for i in range(n_abnormal):
            image, mask = _lesions(rng, _slice(rng, size))
            _save(image, tmp / "bad" / f"lesion_{i:03d}.png")
            _save(mask.astype(float), tmp / "masks" / f"lesion_{i:03d}.png")
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


class DemoImages(Folder):
    """anomalib ``Folder`` datamodule over the generated demo set (created on first use).

    Args:
        root: where the set lives; relative paths are resolved against the working directory.
        seed: generation and split seed.
        train_batch_size, eval_batch_size, num_workers: as for anomalib datamodules.
    """

    object_name = "brain MRI scan"

    def __init__(
        self,
        root: str | Path = "datasets/demo_images",
        seed: int = 0,
        train_batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        make_demo_images(root, seed=seed)
        super().__init__(
            name="demo_images",
            root=root,
            normal_dir="good",
            abnormal_dir="bad",
            mask_dir="masks",
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
        )
