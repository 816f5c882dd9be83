# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The generated demo set: deterministic, atomic, masks match the lesions, served by anomalib's Folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_medclip.demo import DemoImages, make_demo_images


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_generation_is_deterministic_and_masks_cover_bright_lesions(tmp_path: Path) -> None:
    a = make_demo_images(tmp_path / "a", n_normal=3, n_abnormal=3, size=40, seed=5)
    b = make_demo_images(tmp_path / "b", n_normal=3, n_abnormal=3, size=40, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 9
    assert all(np.array_equal(_read(a / f), _read(b / f)) for f in files)
    for mask_path in (a / "masks").iterdir():
        image, mask = _read(a / "bad" / mask_path.name), _read(mask_path) > 0
        assert mask.any()
        assert image[mask].min() > 200  # lesions are bright
        assert image[~mask].max() < 200
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind


def test_existing_set_is_reused_not_rewritten(tmp_path: Path) -> None:
    root = make_demo_images(tmp_path / "d", n_normal=1, n_abnormal=1, size=32)
    stamp = (root / "good" / "normal_000.png").stat().st_mtime_ns
    make_demo_images(root, n_normal=1, n_abnormal=1, size=32, seed=9)
    assert (root / "good" / "normal_000.png").stat().st_mtime_ns == stamp


def test_datamodule_serves_labelled_splits(tmp_path: Path) -> None:
    datamodule = DemoImages(root=tmp_path / "demo", num_workers=0)
    datamodule.setup()
    test = datamodule.test_data.samples
    assert datamodule.object_name == "brain MRI scan"
    assert len(datamodule.train_data) > 0
    assert set(test.label_index) == {0, 1}
    assert (test[test.label_index == 1].mask_path != "").all()


@pytest.mark.parametrize("size", [32, 96])
def test_image_size(tmp_path: Path, size: int) -> None:
    root = make_demo_images(tmp_path / str(size), n_normal=1, n_abnormal=1, size=size)
    assert _read(root / "good" / "normal_000.png").shape == (size, size)


REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "configs" / "demo" / "med_cross_modal_clip_demo_brats.yaml"


def _training_gain_module():
    spec = importlib.util.spec_from_file_location("demo_training_gain", REPO / "benchmarks" / "demo_training_gain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_job_config_is_the_cheap_one_and_the_benchmark_reads_it() -> None:
    """The README's main job stays a few CPU-minutes (issue 11) and the training-gain benchmark uses its settings."""
    settings = _training_gain_module().load_settings(DEMO_CONFIG)
    model, data = settings["model"], settings["data"]
    assert settings["epochs"] == 1
    assert model["backbone"] == "ViT-S-16"
    assert model["pretrained"] is None
    assert model["image_size"] == 64
    assert model["finetune_layers"] == 1
    assert data["root"] == "datasets/demo_brats"
    assert data.get("n_subjects", 12) == 12
    header = DEMO_CONFIG.read_text().split("seed_everything")[0]
    for phrase in ("supervised on the DemoBraTS training subjects", "F1-adaptive", "min-max", "CPU"):
        assert phrase in header


def test_readme_job_config_instantiates(tmp_path: Path) -> None:
    """The config's model and data arguments build (no generation: setup is not called)."""
    from anomalib_medclip import MedCrossModalCLIP
    from anomalib_medclip.data import DemoBraTS

    settings = _training_gain_module().load_settings(DEMO_CONFIG)
    model = MedCrossModalCLIP(**settings["model"], visualizer=False)
    assert model.model.backbone.image_size == settings["model"]["image_size"]
    datamodule = DemoBraTS(**{**settings["data"], "root": tmp_path / "demo"})
    assert datamodule.train_batch_size == settings["data"]["train_batch_size"]
    assert not (tmp_path / "demo").exists()
