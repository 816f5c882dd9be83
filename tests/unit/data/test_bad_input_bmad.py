# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Bad BMAD input gives a clear error or a warning plus a correct result, never a silent wrong one (issue 12).

Each test builds a small tree, makes it read-only and checks afterwards that nothing under it changed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from anomalib_medclip.data import MedBMAD, make_med_bmad_dataset, read_med_image, read_med_mask
from anomalib_medclip.data.bmad import MedImageDataset, no_train_split_message

DRAWN = 14 * 16  # pixels of the lesion drawn in the JPEG masks


def _image(path: Path, value: int = 120, size: tuple[int, int] = (64, 64), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    array = np.clip(rng.normal(value, 30, size[::-1]), 0, 255).astype(np.uint8)  # noise: PNGs of a few KB
    Image.fromarray(array).save(path, format=fmt)
    return path


def _lesion_mask(path: Path, fmt: str) -> Path:
    """A 64x64 mask with a 14x16 lesion (224 pixels) of value 255, saved as ``fmt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle([20, 20, 35, 33], fill=255)
    assert (np.asarray(mask) > 0).sum() == DRAWN
    mask.save(path, format=fmt, quality=75)
    return path


def _mvfa_liver(root: Path, mask_format: str = "PNG", mask_ext: str = ".png") -> Path:
    """MVFA release layout (no ``train/``): ``Liver_AD/{valid,test}/{good,Ungood}/img`` + ``anomaly_mask``."""
    cat = root / "Liver_AD"
    for split in ("valid", "test"):
        for i in range(2):
            _image(cat / split / "good" / "img" / f"good{i}.png", 60 + i)
            _image(cat / split / "Ungood" / "img" / f"bad{i}.png", 180 + i)
            _lesion_mask(cat / split / "Ungood" / "anomaly_mask" / f"bad{i}{mask_ext}", mask_format)
    return cat


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root`` with its mode and (for files) content hash."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def freeze(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """``freeze(root)`` makes a generated dataset read-only (chmod -R a-w); at teardown nothing under it changed."""
    before: dict[str, tuple[int, str]] = {}

    def _freeze(root: Path) -> None:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        before.update(_snapshot(tmp_path))

    yield _freeze
    after = _snapshot(tmp_path)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert before, "the test did not freeze its dataset"
    assert after == before, "the loader changed files under the dataset root"


# 7. Masks saved as JPEG: ringing must not count as lesion.
def test_jpeg_masks_binarised_at_half_range_with_one_warning_per_folder(
    tmp_path: Path, freeze: Callable[[Path], None]
) -> None:
    cat = _mvfa_liver(tmp_path, "JPEG", ".jpg")
    freeze(tmp_path)
    jpeg = cat / "test" / "Ungood" / "anomaly_mask" / "bad0.jpg"
    inflated = int((np.asarray(Image.open(jpeg)) > 0).sum())
    assert inflated > DRAWN + 40  # today's `mask > 0` reads ~344 pixels for the 224 drawn
    with pytest.warns(UserWarning, match=r"masks in .*anomaly_mask are JPEG \(lossy\)") as record:
        samples = make_med_bmad_dataset(tmp_path, "Liver", split="test")
    lossy = sorted(str(w.message) for w in record if "JPEG (lossy)" in str(w.message))
    assert len(lossy) == 2  # once per mask folder (test/ and valid/), not once per mask
    assert str(cat / "test" / "Ungood" / "anomaly_mask") in lossy[0]
    assert str(cat / "valid" / "Ungood" / "anomaly_mask") in lossy[1]
    assert "2 of 2 masks" in lossy[0]
    assert ">= 128 of 255" in lossy[0]
    assert "Save the masks as PNG" in lossy[0]
    dataset = MedImageDataset(samples)
    for index in np.flatnonzero(dataset.samples.label_index):
        assert abs(int(dataset[int(index)].gt_mask.sum()) - DRAWN) <= 4  # 224 read as 224 (today: ~344)
    assert abs(int(read_med_mask(jpeg).sum()) - DRAWN) <= 4


def test_png_masks_keep_any_value_above_zero(tmp_path: Path, freeze: Callable[[Path], None]) -> None:
    cat = _mvfa_liver(tmp_path)
    faint = cat / "test" / "Ungood" / "anomaly_mask" / "bad1.png"
    faint.chmod(0o644)
    Image.fromarray(np.where(np.asarray(Image.open(faint)) > 0, 1, 0).astype(np.uint8)).save(faint)
    freeze(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        make_med_bmad_dataset(tmp_path, "Liver")
    assert not [w for w in record if "lossy" in str(w.message)]
    assert int(read_med_mask(faint).sum()) == DRAWN  # value 1 is lesion in a lossless mask, as before


# 8. The same stem twice in one folder.
@pytest.mark.parametrize("where", ["images", "masks"])
def test_same_stem_twice_in_a_folder_names_both_files(
    tmp_path: Path, freeze: Callable[[Path], None], where: str
) -> None:
    cat = tmp_path / "Brain_AD" / "test"
    _image(cat / "good" / "img" / "good0.png")
    _image(cat / "Ungood" / "img" / "test_a0.png")
    _lesion_mask(cat / "Ungood" / "anomaly_mask" / "test_a0.png", "PNG")
    folder = cat / "Ungood" / ("img" if where == "images" else "anomaly_mask")
    if where == "images":
        _image(folder / "test_a0.jpg", fmt="JPEG")
    else:
        _lesion_mask(folder / "test_a0.bmp", "BMP")
    freeze(tmp_path)
    other = "test_a0.jpg" if where == "images" else "test_a0.bmp"
    with pytest.raises(ValueError, match="Two files with the stem 'test_a0'") as error:
        make_med_bmad_dataset(tmp_path, "Brain")
    assert str(folder / other) in str(error.value)
    assert str(folder / "test_a0.png") in str(error.value)
    assert "Keep one of them" in str(error.value)


def test_same_stem_twice_in_a_classification_folder(tmp_path: Path, freeze: Callable[[Path], None]) -> None:
    folder = tmp_path / "Chest_AD" / "test" / "good"
    _image(folder / "Normal-1.png")
    _image(folder / "Normal-1.jpeg", fmt="JPEG")
    _image(tmp_path / "Chest_AD" / "test" / "Ungood" / "No-Not-Normal_2.png")
    freeze(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'Normal-1.jpeg'} and {folder / 'Normal-1.png'}")):
        make_med_bmad_dataset(tmp_path, "Chest")


# 13. A truncated or corrupt file.
def test_truncated_png_error_names_the_file_and_the_fix(tmp_path: Path, freeze: Callable[[Path], None]) -> None:
    cat = _mvfa_liver(tmp_path)
    broken = cat / "test" / "good" / "img" / "good1.png"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    freeze(tmp_path)
    samples = make_med_bmad_dataset(tmp_path, "Liver", split="test")  # headers are fine: listing works
    dataset = MedImageDataset(samples)
    index = dataset.samples.image_path.tolist().index(str(broken))
    with pytest.raises(OSError, match=re.escape(f"Image file {broken} is truncated or corrupt")) as error:
        dataset[index]
    assert "image file is truncated" in str(error.value)  # PIL's own words are kept
    assert "Re-extract or re-download it" in str(error.value)
    assert dataset[index - 1].image.shape == (3, 64, 64)  # the other files still read


def test_mask_with_a_truncated_header_names_the_file(tmp_path: Path, freeze: Callable[[Path], None]) -> None:
    cat = _mvfa_liver(tmp_path)
    broken = cat / "valid" / "Ungood" / "anomaly_mask" / "bad0.png"
    broken.write_bytes(broken.read_bytes()[:20])
    freeze(tmp_path)
    with pytest.raises(OSError, match=re.escape(f"Image file {broken} is truncated or corrupt")):
        make_med_bmad_dataset(tmp_path, "Liver")
    with pytest.raises(OSError, match="Re-extract or re-download"):
        read_med_image(broken)
    with pytest.raises(FileNotFoundError):  # a missing file stays a FileNotFoundError
        read_med_image(cat / "missing.png")


# 19. Zero-shot on the MVFA release: an empty train split.
def test_mvfa_release_without_train_gives_an_empty_train_split(
    tmp_path: Path, freeze: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    _mvfa_liver(tmp_path)
    freeze(tmp_path)
    datamodule = MedBMAD(tmp_path, "Liver", num_workers=0, train_batch_size=2, eval_batch_size=2)
    with caplog.at_level(logging.WARNING, logger="anomalib_medclip.data.bmad"):
        datamodule.setup()
    assert len(datamodule.train_data) == 0
    assert (len(datamodule.val_data), len(datamodule.test_data)) == (4, 4)
    assert datamodule.train_data.task.value == "segmentation"
    loader = datamodule.train_dataloader()
    assert len(loader) == 0
    assert list(loader) == []
    assert len(datamodule.val_dataloader()) == 2
    assert "has no train/ split" in caplog.text
    assert "only models that do not train" in caplog.text
    message = no_train_split_message(tmp_path, "Liver")
    assert f"BMAD Liver under {tmp_path} has no train/ split" in message
    assert "use shots=K or leave_one_out=True" in message


def test_empty_train_folder_is_still_refused(tmp_path: Path, freeze: Callable[[Path], None]) -> None:
    cat = _mvfa_liver(tmp_path)
    (cat / "train" / "good").mkdir(parents=True)
    freeze(tmp_path)
    with pytest.raises(ValueError, match=r"train split of BMAD Liver .* is empty \(its train/ folder holds no images"):
        MedBMAD(tmp_path, "Liver", num_workers=0).setup()
