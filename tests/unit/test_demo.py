# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The generated demo set: deterministic, atomic, masks match the lesions, served by anomalib's Folder."""

from __future__ import annotations

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
