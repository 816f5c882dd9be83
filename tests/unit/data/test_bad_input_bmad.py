# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Bad BMAD input gives a clear error or a warning plus a correct result, never a silent wrong one (issue 12).

Each test builds a small tree, makes it read-only and checks afterwards that nothing under it changed.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
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


def test_png_masks_keep_any_value_above_zero(tmp_path: Path, read_only: Callable[[Path], Path]) -> None:
    cat = _mvfa_liver(tmp_path)
    faint = cat / "test" / "Ungood" / "anomaly_mask" / "bad1.png"
    faint.chmod(0o644)
    Image.fromarray(np.where(np.asarray(Image.open(faint)) > 0, 1, 0).astype(np.uint8)).save(faint)
    read_only(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        make_med_bmad_dataset(tmp_path, "Liver")
    assert not [w for w in record if "lossy" in str(w.message)]
    assert int(read_med_mask(faint).sum()) == DRAWN  # value 1 is lesion in a lossless mask, as before


# 8. The same stem twice in one folder.
@pytest.mark.parametrize("where", ["images", "masks"])
def test_same_stem_twice_in_a_folder_names_both_files(
    tmp_path: Path, read_only: Callable[[Path], Path], where: str
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
    read_only(tmp_path)
    other = "test_a0.jpg" if where == "images" else "test_a0.bmp"
    with pytest.raises(ValueError, match="Two files with the stem 'test_a0'") as error:
        make_med_bmad_dataset(tmp_path, "Brain")
    assert str(folder / other) in str(error.value)
    assert str(folder / "test_a0.png") in str(error.value)
    assert "Keep one of them" in str(error.value)


def test_same_stem_twice_in_a_classification_folder(tmp_path: Path, read_only: Callable[[Path], Path]) -> None:
    folder = tmp_path / "Chest_AD" / "test" / "good"
    _image(folder / "Normal-1.png")
    _image(folder / "Normal-1.jpeg", fmt="JPEG")
    _image(tmp_path / "Chest_AD" / "test" / "Ungood" / "No-Not-Normal_2.png")
    read_only(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'Normal-1.jpeg'} and {folder / 'Normal-1.png'}")):
        make_med_bmad_dataset(tmp_path, "Chest")


# 13. A truncated or corrupt file.
def test_truncated_png_error_names_the_file_and_the_fix(tmp_path: Path, read_only: Callable[[Path], Path]) -> None:
    cat = _mvfa_liver(tmp_path)
    broken = cat / "test" / "good" / "img" / "good1.png"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    read_only(tmp_path)
    samples = make_med_bmad_dataset(tmp_path, "Liver", split="test")  # headers are fine: listing works
    dataset = MedImageDataset(samples)
    index = dataset.samples.image_path.tolist().index(str(broken))
    with pytest.raises(OSError, match=re.escape(f"Image file {broken} is truncated or corrupt")) as error:
        dataset[index]
    assert "image file is truncated" in str(error.value)  # PIL's own words are kept
    assert "Re-extract or re-download it" in str(error.value)
    assert dataset[index - 1].image.shape == (3, 64, 64)  # the other files still read


def test_mask_with_a_truncated_header_names_the_file(tmp_path: Path, read_only: Callable[[Path], Path]) -> None:
    cat = _mvfa_liver(tmp_path)
    broken = cat / "valid" / "Ungood" / "anomaly_mask" / "bad0.png"
    broken.write_bytes(broken.read_bytes()[:20])
    read_only(tmp_path)
    with pytest.raises(OSError, match=re.escape(f"Image file {broken} is truncated or corrupt")):
        make_med_bmad_dataset(tmp_path, "Liver")
    with pytest.raises(OSError, match="Re-extract or re-download"):
        read_med_image(broken)
    with pytest.raises(FileNotFoundError):  # a missing file stays a FileNotFoundError
        read_med_image(cat / "missing.png")


# 19. Zero-shot on the MVFA release: an empty train split.
def test_mvfa_release_without_train_gives_an_empty_train_split(
    tmp_path: Path, read_only: Callable[[Path], Path], caplog: pytest.LogCaptureFixture
) -> None:
    _mvfa_liver(tmp_path)
    read_only(tmp_path)
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
    assert datamodule.empty_train_split_reason == message  # what a model that trains is refused with
    assert f"BMAD Liver under {tmp_path} has no train/ split" in message
    assert "use shots=K or leave_one_out=True" in message


def test_empty_train_folder_is_still_refused(tmp_path: Path, read_only: Callable[[Path], Path]) -> None:
    cat = _mvfa_liver(tmp_path)
    (cat / "train" / "good").mkdir(parents=True)
    read_only(tmp_path)
    with pytest.raises(ValueError, match=r"train split of BMAD Liver .* is empty \(its train/ folder holds no images"):
        MedBMAD(tmp_path, "Liver", num_workers=0).setup()
