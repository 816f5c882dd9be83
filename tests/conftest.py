# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small random-initialised CLIP backbones and models, generated image folders (no network, weights).

``tiny_model(name, **overrides)`` builds any model of the package on ``ViT-tiny-test`` (the real open_clip code paths,
12 + 12 blocks of width 64, built in milliseconds) with the few options that keep each method's every part exercised
at 32 px; ``tiny_model(name, biomed=True)`` on ``BiomedCLIP-tiny-test`` (timm ViT + Hugging Face BERT). Tests of one
model's own numbers use ``small_backbone`` (ViT-B-16 at 32 px) where the width matters.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network (read when huggingface_hub is imported)

from anomalib_medclip.demo import make_demo_images

TINY = {"backbone": "ViT-tiny-test", "pretrained": None, "image_size": 32}
TINY_OPTIONS: dict[str, dict[str, object]] = {  # per model: what exercises its trainable / test-time parts quickly
    "VanillaCLIP": {"finetune_layers": 1, "object_name": "toy"},
    "MedCrossModalCLIP": {"finetune_layers": 1, "object_name": "toy"},
    "AnomalyCLIP": {},
    "AdaCLIP": {"object_name": "toy", "k_clusters": 2},
    "AprilGAN": {"object_name": "toy"},
    "VAND": {"object_name": "toy"},
    "AnoVL": {"object_name": "toy", "tta_steps": 2, "domains": ["photo"]},
    "AACLIP": {"object_name": "toy", "text_epochs": 1, "smoothing_kernel": 3},
    "MVFA": {"object_name": "toy"},
}


TINY_BIOMED = {**TINY, "backbone": "BiomedCLIP-tiny-test"}  # timm ViT (4 blocks) + 2-layer BERT, BiomedCLIP's shape
BIOMED_OPTIONS: dict[str, dict[str, object]] = {"AnomalyCLIP": {"deep_depth": 2}, "AdaCLIP": {"prompt_depth": 2}}


@pytest.fixture
def tiny_model():
    """``tiny_model(name, biomed=False, **overrides)``: a model of the package on a tiny test backbone (random weights).

    ``biomed=True`` builds it on ``BiomedCLIP-tiny-test`` (BiomedCLIP's tower kinds), with text-depth options that fit
    its 2 BERT layers.
    """
    from anomalib_medclip.models import get_model

    def make(name: str, *, biomed: bool = False, **overrides: object):
        base = {**TINY_BIOMED, **BIOMED_OPTIONS.get(name, {})} if biomed else TINY
        return get_model(name, **{**base, **TINY_OPTIONS[name], **overrides})

    return make


@pytest.fixture(scope="session")
def small_backbone():
    """ViT-B-16 at 32 px (2x2 patches), random weights: real architecture, fast on CPU."""
    from anomalib_medclip.backbones import CLIPBackbone

    return CLIPBackbone("ViT-B-16", None, image_size=32)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A tiny segmentation dataset in anomalib Folder layout."""
    return make_demo_images(tmp_path / "folder", n_normal=6, n_abnormal=6, size=48)


@pytest.fixture
def toy_folder():
    """``toy_folder(root)``: anomalib's ``Folder`` datamodule over an :func:`image_folder` tree (batches of 4)."""
    from anomalib.data import Folder

    def make(root: Path) -> Folder:
        return Folder(
            name="toy", root=root, normal_dir="good", abnormal_dir="bad", mask_dir="masks",
            train_batch_size=4, eval_batch_size=4, num_workers=0, seed=0,
        )  # fmt: skip

    return make


@pytest.fixture
def cpu_engine():
    """``cpu_engine(root, **kwargs)``: anomalib's ``Engine`` on one CPU, without logger or progress bar."""
    from anomalib.engine import Engine

    def make(root: Path, **kwargs: object) -> Engine:
        return Engine(
            default_root_dir=root, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, **kwargs
        )

    return make


def _mvfa_image(path: Path, seed: int, lesion: tuple[slice, slice] | None) -> None:
    rng = np.random.default_rng(seed)
    array = rng.integers(40, 90, (24, 24), dtype=np.uint8)
    if lesion is not None:
        array[lesion] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _mvfa_mask(path: Path, lesion: tuple[slice, slice]) -> None:
    array = np.zeros((24, 24), np.uint8)
    array[lesion] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="session")
def mvfa_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MVFA-release BMAD tree (no ``train/``): Liver, Brain (masks) and Chest (labels only), 24 x 24 images.

    Each has ``valid/`` (Liver 6 + 6, the others 3 + 3) and ``test/`` (3 + 3) images; abnormal image ``i`` has a bright
    8 x 8 lesion at ``(6 + i, 8 + i)``, its mask (segmentation categories) marks it. ``fewshot_seed/Liver/4-shot.txt``
    lists 4 + 4 Liver ``valid/`` images.
    """
    root = tmp_path_factory.mktemp("mvfa_tree")
    seed = 0
    for category, masks, n_valid in (("Liver", True, 6), ("Brain", True, 3), ("Chest", False, 3)):
        for split, count in (("valid", n_valid), ("test", 3)):
            for label in ("good", "Ungood"):
                for i in range(count):
                    seed += 1
                    name = f"{category.lower()}_{split}_{label}{i}.png"
                    lesion = (slice(6 + i, 14 + i), slice(8 + i, 16 + i)) if label == "Ungood" else None
                    _mvfa_image(root / f"{category}_AD" / split / label / "img" / name, seed, lesion)
                    if masks and lesion is not None:
                        _mvfa_mask(root / f"{category}_AD" / split / label / "anomaly_mask" / name, lesion)
    shots = root / "fewshot_seed" / "Liver"
    shots.mkdir(parents=True)
    normal = " ".join(f"liver_valid_good{i}.png" for i in range(4))
    abnormal = " ".join(f"liver_valid_Ungood{i}.png" for i in range(4))
    (shots / "4-shot.txt").write_text(f"n-0: {normal}\na-0: {abnormal}\n")
    return root


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root`` with its mode and (for files) content hash."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], Path]]:
    """``read_only(root)``: make a generated dataset read-only (chmod -R a-w); at teardown nothing under it changed.

    Tests run as root, which writes through mode bits: the content hashes are the real check.
    """
    frozen: list[tuple[Path, dict[str, tuple[int, str]]]] = []

    def freeze(root: Path) -> Path:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        frozen.append((root, _tree(root)))
        return root

    yield freeze
    for root, before in frozen:
        after = _tree(root)
        for path in [root, *root.rglob("*")]:  # writable again, so that pytest can remove tmp_path
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        assert after == before, f"something under the dataset root {root} changed"


@pytest.fixture
def check_towers():
    """``check_towers(name)``: the backbone's layer-wise towers equal open_clip's own encoders (and layer-6 tokens, or
    the last layer's for shallower towers).

    Shared by the unit lane (ViT-B-16, the tiny test architecture) and the integration lane (ViT-L-14-336).
    """
    import torch

    from anomalib_medclip.backbones import CLIPBackbone

    texts = ["a photo of a normal brain MRI scan", "a photo of an anomalous brain MRI scan", "x"]

    def check(name: str) -> None:
        backbone = CLIPBackbone(name, None)
        size = backbone.image_size
        images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        tokens = backbone.tokenize(texts)
        with torch.no_grad():
            image_diff = (backbone.encode_image(images).pooled - backbone.clip.encode_image(images)).abs().max()
            text_diff = (backbone.encode_text(tokens) - backbone.clip.encode_text(tokens)).abs().max()
            layer = min(6, backbone.visual_depth)
            ref = backbone.clip.visual.forward_intermediates(
                images, indices=[layer - 1], output_fmt="NLC", intermediates_only=True
            )
            tokens6 = backbone.encode_image(images, out_layers=(layer,)).patch_tokens[0]
        assert image_diff < 1e-5
        assert text_diff < 1e-5
        assert (tokens6 - ref["image_intermediates"][0]).abs().max() < 1e-5
        assert backbone.info.quick_gelu is name.endswith("quickgelu")

    return check
