# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Tests of MedBMAD on small trees of every BMAD / MVFA layout variant."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_medclip.data import MedBMAD, make_med_bmad_dataset, read_med_image, read_med_mask


def _png(path: Path, value: int, mode: str = "L", size: tuple[int, int] = (8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(np.full(size[::-1], value, np.uint16)).save(path)
    elif mode == "RGBA":
        array = np.zeros((*size[::-1], 4), np.uint8)
        array[..., :3], array[..., 3] = value, 255
        Image.fromarray(array, "RGBA").save(path)
    else:
        Image.fromarray(np.full(size[::-1], value, np.uint8)).convert(mode).save(path)
    return path


def _split(folder: Path, n_good: int, n_bad: int, *, img: bool, mask_dir: Path | None, ext: str = ".png") -> None:
    """``good``/``Ungood`` images (flat or under ``img/``); masks named like the images in ``mask_dir``."""
    for label, count, value in (("good", n_good, 40), ("Ungood", n_bad, 200)):
        for i in range(count):
            name = f"{label}{i}{ext}"
            _png(folder / label / ("img" if img else "") / name, value, "RGB" if ext == ".jpeg" else "L")
            if mask_dir is not None and label == "Ungood":
                _png(mask_dir / f"{label}{i}.png", 255 if i else 1)


def _counts(samples) -> dict[tuple[str, int], int]:
    return samples.groupby(["split", "label_index"]).size().to_dict()


def test_bmad_drive_brain_layout_with_label_masks(tmp_path: Path) -> None:
    cat = tmp_path / "BraTS2021_slice"
    for i in range(3):
        _png(cat / "train" / "good" / f"{i:05d}_60.png", 30, "RGBA")
    _split(cat / "valid", 1, 2, img=True, mask_dir=cat / "valid" / "Ungood" / "label")
    _split(cat / "test", 2, 3, img=True, mask_dir=cat / "test" / "Ungood" / "label")
    samples = make_med_bmad_dataset(tmp_path, "Brain")
    assert _counts(samples) == {("test", 0): 2, ("test", 1): 3, ("train", 0): 3, ("val", 0): 1, ("val", 1): 2}
    assert samples.attrs["task"] == "segmentation"
    abnormal = samples[samples.label_index == 1]
    assert all(
        Path(m).stem == Path(i).stem and "/label/" in m
        for i, m in zip(abnormal.image_path, abnormal.mask_path, strict=True)
    )
    datamodule = MedBMAD(tmp_path, "Brain", num_workers=0)
    datamodule.setup()
    item = datamodule.test_data[int(np.flatnonzero(datamodule.test_data.samples.label_index)[0])]
    assert item.gt_mask.all()  # masks of value 1 and 255 are both "> 0"
    assert datamodule.object_name == "Brain"
    assert len(datamodule.train_data) == 3


@pytest.mark.parametrize("mask_name", ["anomaly_mask", "label"])
def test_mvfa_release_fewshot_and_errors(tmp_path: Path, mask_name: str) -> None:
    cat = tmp_path / "Liver_AD"
    _split(cat / "valid", 3, 3, img=True, mask_dir=cat / "valid" / "Ungood" / mask_name)
    _split(cat / "test", 2, 2, img=True, mask_dir=cat / "test" / "Ungood" / mask_name)
    shots = tmp_path / "fewshot_seed" / "Liver"
    shots.mkdir(parents=True)
    (shots / "2-shot.txt").write_text("a-0: Ungood0.png Ungood2.png\nn-0: good1.png good2.png\n")
    datamodule = MedBMAD(tmp_path, "Liver", shots=2, num_workers=0)
    datamodule.setup()
    train = datamodule.train_data.samples
    assert sorted(Path(p).name for p in train.image_path) == ["Ungood0.png", "Ungood2.png", "good1.png", "good2.png"]
    assert sorted(Path(p).name for p in datamodule.val_data.samples.image_path) == ["Ungood1.png", "good0.png"]
    assert len(datamodule.test_data) == 4
    with pytest.raises(FileNotFoundError, match=re.escape("4-shot.txt")):
        MedBMAD(tmp_path, "Liver", shots=4).setup()


def test_nested_resc_layout_with_sibling_label_folders(tmp_path: Path) -> None:
    cat = tmp_path / "RESC"
    _png(cat / "Train" / "train" / "good" / "0_1.png", 20)
    _split(cat / "Val" / "val", 1, 2, img=False, mask_dir=cat / "Val" / "val_label" / "Ungood")
    _split(cat / "Test" / "test", 2, 2, img=False, mask_dir=cat / "Test" / "test_label" / "Ungood")
    samples = make_med_bmad_dataset(tmp_path, "Retina_RESC")
    assert _counts(samples) == {("test", 0): 2, ("test", 1): 2, ("train", 0): 1, ("val", 0): 1, ("val", 1): 2}
    assert all("val_label" in m or "test_label" in m for m in samples[samples.label_index == 1].mask_path)


def test_liver_img_label_above_good_ungood(tmp_path: Path) -> None:
    cat = tmp_path / "hist_DIY" / "valid"
    for label, value in (("good", 1), ("Ungood", 2)):
        _png(cat / "img" / label / f"{label}.png", value)
    _png(cat / "label" / "Ungood" / "Ungood.png", 255)
    samples = make_med_bmad_dataset(tmp_path, "Liver")
    assert samples.mask_path.tolist() == ["", str(cat / "label" / "Ungood" / "Ungood.png")]


def test_classification_layouts_flat_val_jpeg(tmp_path: Path) -> None:
    _split(tmp_path / "Chest-RSNA" / "val", 2, 1, img=False, mask_dir=None)
    _split(tmp_path / "Chest-RSNA" / "test", 1, 2, img=False, mask_dir=None)
    _png(tmp_path / "Chest-RSNA" / "train" / "good" / "Normal-1.png", 9)
    _split(tmp_path / "OCT2017" / "test", 2, 3, img=False, mask_dir=None, ext=".jpeg")
    chest = make_med_bmad_dataset(tmp_path, "Chest")
    assert chest.attrs["task"] == "classification"
    assert _counts(chest) == {("test", 0): 1, ("test", 1): 2, ("train", 0): 1, ("val", 0): 2, ("val", 1): 1}
    assert (chest.mask_path == "").all()
    oct_samples = make_med_bmad_dataset(tmp_path, "Retina_OCT2017", split="test")
    assert sorted(Path(p).suffix for p in oct_samples.image_path) == [".jpeg"] * 5
    assert (oct_samples.label_index == [0, 0, 1, 1, 1]).all()


def test_leave_one_out_trains_on_other_test_sets(tmp_path: Path) -> None:
    _split(tmp_path / "Chest_AD" / "test", 1, 2, img=True, mask_dir=None)
    _split(tmp_path / "Histopathology_AD" / "test", 2, 1, img=True, mask_dir=None)
    _split(
        tmp_path / "Brain_AD" / "valid",
        1,
        1,
        img=True,
        mask_dir=tmp_path / "Brain_AD" / "valid" / "Ungood" / "anomaly_mask",
    )
    _split(
        tmp_path / "Brain_AD" / "test",
        1,
        1,
        img=True,
        mask_dir=tmp_path / "Brain_AD" / "test" / "Ungood" / "anomaly_mask",
    )
    datamodule = MedBMAD(tmp_path, "Brain", leave_one_out=True, num_workers=0)
    with pytest.warns(UserWarning, match="skips Liver"):
        datamodule.setup()
    assert sorted(set(datamodule.train_data.samples.category)) == ["Chest", "Histopathology"]
    assert len(datamodule.train_data) == 6
    assert datamodule.train_data.task.value == "classification"
    assert datamodule.test_data.task.value == "segmentation"


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("['Brain', 'Brain_AD', 'BraTS2021_slice'")):
        make_med_bmad_dataset(tmp_path, "Brain")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_med_bmad_dataset(tmp_path / "nowhere", "Brain")
    with pytest.raises(ValueError, match="Unknown BMAD category"):
        MedBMAD(tmp_path, "BMAD")
    cat = tmp_path / "Brain_AD" / "test"
    _split(cat, 1, 1, img=True, mask_dir=cat / "Ungood" / "anomaly_mask")
    _png(cat / "Ungood" / "anomaly_mask" / "orphan.png", 255)
    with pytest.raises(ValueError, match=r"Masks without an image.*orphan"):
        make_med_bmad_dataset(tmp_path, "Brain")
    (cat / "Ungood" / "anomaly_mask" / "orphan.png").unlink()
    _png(cat / "Ungood" / "anomaly_mask" / "Ungood0.png", 255, size=(5, 5))
    with pytest.raises(ValueError, match=re.escape("Ungood0.png size")):
        make_med_bmad_dataset(tmp_path, "Brain")
    (cat / "Ungood" / "anomaly_mask" / "Ungood0.png").unlink()
    with pytest.raises(ValueError, match=re.escape("Ungood0.png has no mask")):
        make_med_bmad_dataset(tmp_path, "Brain")


def test_reader_keeps_16_bit_range_and_drops_alpha(tmp_path: Path) -> None:
    image = read_med_image(_png(tmp_path / "a.png", 4000, "I;16"))
    assert image.shape == (3, 6, 8)
    torch.testing.assert_close(image, torch.full((3, 6, 8), 4000 / 65535))
    rgba = read_med_image(_png(tmp_path / "b.png", 51, "RGBA"))
    torch.testing.assert_close(rgba, torch.full((3, 6, 8), 0.2))
    assert not read_med_mask(_png(tmp_path / "black.png", 0, "RGBA")).any()  # opaque black is not an anomaly
    assert read_med_mask(_png(tmp_path / "m16.png", 1, "I;16")).all()


@pytest.mark.filterwarnings("ignore:Leave-one-out training skips")
def test_leave_one_out_batches_are_one_category_with_its_masks(mvfa_tree: Path) -> None:
    datamodule = MedBMAD(mvfa_tree, "Liver", leave_one_out=True, num_workers=0, train_batch_size=2)
    datamodule.setup()
    train = datamodule.train_data.samples
    assert datamodule.train_data.task.value == "segmentation"  # some of its items carry masks
    category = dict(zip(train.image_path, train.category, strict=True))
    mask_file = dict(zip(train.image_path, train.mask_path, strict=True))
    assert sorted(set(category.values())) == ["Brain", "Chest"]
    loader = datamodule.train_dataloader()
    seen: list[str] = []
    for batch in loader:
        (source,) = {category[path] for path in batch.image_path}  # one category per batch
        if source == "Chest":
            assert batch.gt_mask is None
        else:
            assert batch.gt_mask is not None
            for path, mask in zip(batch.image_path, batch.gt_mask, strict=True):
                assert bool(mask_file[path]) == ("Ungood" in path)
                expected = np.asarray(Image.open(mask_file[path])) > 0 if mask_file[path] else np.zeros((24, 24), bool)
                assert np.array_equal(mask.numpy(), expected)  # zeros for the normal images
        seen += batch.image_path
    assert sorted(seen) == sorted(train.image_path)  # every training image once per epoch
    assert len(loader) == 6  # 3 + 3 batches of 2: Brain's 6 test images, Chest's 6
