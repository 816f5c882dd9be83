# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Tests of the BraTS slice datamodule, NiftiScans and the synthetic demo set, against nibabel read directly."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from anomalib_medclip.data import BraTS, BraTSDataset, DemoBraTS, MedSliceBatch, NiftiScans, generate_demo_brats

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
ANISO = np.diag([0.9, 0.9, 2.5, 1.0])
MET_MODALITIES = ("t1n", "t1c", "t2w", "t2f")


def _seg(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    x, y, z = (rng.integers(0, n - 2) for n in shape)
    seg[x : x + 3, y : y + 2, z : z + 2] = rng.choice([1, 2, 3], size=(3, 2, 2))
    return seg


def _write_case(
    folder: Path, sep: str, modalities: tuple[str, ...], shape: tuple[int, ...], affine: np.ndarray, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    image = rng.uniform(10, 100, size=shape).astype(np.float32)
    image[0] = 0  # an empty border, as in skull-stripped scans
    for modality in modalities:
        nib.save(nib.Nifti1Image(image * (1 + len(modality)), affine), folder / f"{folder.name}{sep}{modality}.nii.gz")
    nib.save(nib.Nifti1Image(_seg(shape, rng), affine), folder / f"{folder.name}{sep}seg.nii.gz")


@pytest.fixture
def met_root(tmp_path: Path) -> Path:
    """Five BraTS-MET cases of four subjects: one anisotropic non-240 grid and one LPS case; 00002 has two visits."""
    root = tmp_path / "met"
    specs = [("00001-000", (12, 10, 8), np.eye(4)), ("00002-000", (12, 10, 8), LPS), ("00002-001", (12, 10, 8), LPS)]
    specs += [("00003-000", (9, 14, 6), ANISO), ("00004-000", (12, 10, 8), np.eye(4))]
    for index, (case, shape, affine) in enumerate(specs):
        _write_case(root / f"BraTS-MET-{case}", "-", MET_MODALITIES, shape, affine, index)
    return root


def _canonical(path: str) -> np.ndarray:
    return nib.as_closest_canonical(nib.load(path)).get_fdata()


def test_every_slice_matches_nibabel(met_root: Path) -> None:
    dataset = BraTSDataset(met_root, modality="flair")
    assert dataset.task.value == "segmentation"
    expected_slices = sum(_canonical(str(p)).shape[2] for p in met_root.glob("*/*-seg.nii.gz"))
    assert len(dataset) == expected_slices == 8 * 4 + 6
    for index in range(len(dataset)):
        item, row = dataset[index], dataset.samples.iloc[index]
        seg = _canonical(row.mask_path)[:, :, int(item.slice_index)] > 0
        expected = np.fliplr(np.rot90(seg))  # anterior up, patient's right on the left
        np.testing.assert_array_equal(item.gt_mask.numpy(), expected)
        assert int(item.gt_label) == int(seg.any()) == row.label_index
        assert item.image.shape == (3, *expected.shape)
        assert row.image_path.endswith("-t2f.nii.gz")
        assert float(item.image.min()) >= 0.0
        assert float(item.image.max()) <= 1.0


def test_anisotropic_case_keeps_native_size(met_root: Path) -> None:
    dataset = BraTSDataset(met_root)
    rows = dataset.samples[dataset.samples.volume_id == "BraTS-MET-00003-000"]
    assert sorted(rows.slice_index) == list(range(6))
    assert dataset[int(rows.index[0])].image.shape == (3, 14, 9)


def test_subject_level_splits(met_root: Path) -> None:
    datamodule = BraTS(met_root, num_workers=0, eval_batch_size=64, test_ratio=0.25, val_ratio=0.25, seed=3)
    datamodule.setup()
    subjects = {
        split: {v.rsplit("-", 1)[0] for v in getattr(datamodule, f"{split}_data").samples.volume_id}
        for split in ("train", "val", "test")
    }
    assert all(subjects.values())
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    assert set().union(*subjects.values()) == {f"BraTS-MET-0000{i}" for i in range(1, 5)}
    batch = next(iter(datamodule.test_dataloader()))
    assert isinstance(batch, MedSliceBatch)
    assert batch.gt_mask.dtype == torch.bool
    assert datamodule.object_name == "brain MRI scan"
    assert datamodule.category == "t2w"


def test_lesion_and_z_range_selection(met_root: Path) -> None:
    lesion = BraTSDataset(met_root, split="train", test_ratio=0.0, val_ratio=0.0, slices="lesion")
    assert len(lesion) > 0
    assert (lesion.samples.label_index == 1).all()
    window = BraTSDataset(met_root, slices="z_range", z_range=(2, 4))
    assert set(window.samples.slice_index) == {2, 3}
    brain = BraTSDataset(met_root, slices="brain", eval_slices="brain")
    assert len(brain) == len(BraTSDataset(met_root))  # random images have no empty axial slice
    with pytest.raises(ValueError, match="z_range"):
        BraTSDataset(met_root, slices="z_range")


def test_brats2021_naming(tmp_path: Path) -> None:
    for index in (7, 11):
        case = tmp_path / f"BraTS2021_{index:05d}"
        _write_case(case, "_", ("flair", "t1", "t1ce", "t2"), (10, 10, 5), np.eye(4), index)
    dataset = BraTSDataset(tmp_path, modality="t2f")
    assert len(dataset) == 10
    assert all(p.endswith("_flair.nii.gz") for p in dataset.samples.image_path)
    assert sorted(set(dataset.samples.volume_index)) == [0, 1]


def test_errors_name_the_file(met_root: Path) -> None:
    broken = met_root / "BraTS-MET-00004-000" / "BraTS-MET-00004-000-seg.nii.gz"
    broken.write_bytes(broken.read_bytes()[:-30])
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        BraTSDataset(met_root)
    with pytest.warns(UserWarning, match="BraTS-MET-00004-000"):
        assert "BraTS-MET-00004-000" not in set(BraTSDataset(met_root, on_error="skip").samples.volume_id)
    (met_root / "BraTS-MET-00001-000" / "BraTS-MET-00001-000-t2w.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape("BraTS-MET-00001-000-t2w.nii.gz")):
        BraTSDataset(met_root, modality="t2")
    with pytest.warns(UserWarning, match=re.escape("BraTS-MET-00001-000-t2w.nii.gz")):
        assert len(BraTSDataset(met_root, modality="t2w", on_error="skip")) == 8 + 8 + 6
    with pytest.raises(FileNotFoundError, match="No BraTS case folders"):
        BraTSDataset(met_root / "BraTS-MET-00001-000")


def test_shape_mismatch_and_nan(tmp_path: Path) -> None:
    case = tmp_path / "BraTS-MET-00001-000"
    _write_case(case, "-", MET_MODALITIES, (8, 8, 4), np.eye(4), 0)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.uint8), np.eye(4)), case / f"{case.name}-seg.nii.gz")
    with pytest.raises(ValueError, match="canonical shape"):
        BraTSDataset(tmp_path)
    nan_root = tmp_path / "nan"
    _write_case(nan_root / "BraTS-MET-00002-000", "-", MET_MODALITIES, (8, 8, 4), np.eye(4), 1)
    nan_path = nan_root / "BraTS-MET-00002-000" / "BraTS-MET-00002-000-t2w.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 4), np.nan, np.float32), np.eye(4)), nan_path)
    with pytest.raises(ValueError, match=re.escape(f"{nan_path} holds 256 NaN")):
        BraTSDataset(nan_root, slices="brain")
    lazy = BraTSDataset(nan_root)  # "all" slices: the image is only decoded when served
    with pytest.raises(ValueError, match=re.escape(f"{nan_path} holds 256 NaN")):
        lazy[0]


def test_nifti_scans_serve_unlabelled_slices(met_root: Path) -> None:
    datamodule = NiftiScans(met_root / "BraTS-MET-00003-000", modality="flair", num_workers=0)
    datamodule.setup()
    batch = next(iter(datamodule.predict_dataloader()))
    assert batch.image.shape == (6, 3, 14, 9)
    assert batch.gt_label is None
    assert batch.gt_mask is None
    assert batch.volume_id == ["BraTS-MET-00003-000-t2f"] * 6
    reference = BraTSDataset(met_root, modality="t2f")
    row = reference.samples.index[reference.samples.volume_id == "BraTS-MET-00003-000"][0]
    torch.testing.assert_close(batch.image[0], reference[int(row)].image)


def test_all_zero_slice_has_no_nan(tmp_path: Path) -> None:
    case = tmp_path / "BraTS-MET-00001-000"
    _write_case(case, "-", MET_MODALITIES, (6, 6, 3), np.eye(4), 0)
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 3), np.float32), np.eye(4)), case / f"{case.name}-t2w.nii.gz")
    item = BraTSDataset(tmp_path)[0]
    assert torch.isfinite(item.image).all()
    assert float(item.image.abs().sum()) == 0.0


def test_demo_is_deterministic(tmp_path: Path) -> None:
    first = generate_demo_brats(tmp_path / "a", n_subjects=2, seed=5)
    second = generate_demo_brats(tmp_path / "b", n_subjects=2, seed=5)
    files = sorted(p.relative_to(first) for p in first.rglob("*.nii.gz"))
    assert len(files) == 10
    assert all(filecmp.cmp(first / f, second / f, shallow=False) for f in files)
    other = generate_demo_brats(tmp_path / "c", n_subjects=2, seed=6)
    assert not filecmp.cmp(first / files[0], other / files[0], shallow=False)
    with pytest.raises(ValueError, match="not a demo set"):
        generate_demo_brats(first, n_subjects=3, seed=5)


def test_demo_datamodule_labels(tmp_path: Path) -> None:
    datamodule = DemoBraTS(root=tmp_path / "demo", n_subjects=4, num_workers=0, test_ratio=0.25, val_ratio=0.25)
    datamodule.setup()
    for seg_path in (tmp_path / "demo").glob("*/*-seg.nii.gz"):
        labels = set(np.unique(np.asarray(nib.load(seg_path).dataobj)).tolist())
        assert labels == {0, 1, 2, 3} or labels == {0, 2, 3}
        volume = _canonical(str(seg_path))
        assert 40 <= volume.shape[2] <= 70
        assert 45 <= volume.shape[0] <= 100
    train = datamodule.train_data.samples
    assert set(train.label_index) == {0, 1}
    assert not set(train.volume_id) & set(datamodule.test_data.samples.volume_id)
    assert len(list((tmp_path).glob(".demo-*"))) == 0  # no staging folder left behind


@pytest.mark.parametrize(
    ("lengths", "batch_size", "workers"), [([5, 3, 7], 2, 2), ([4, 4], 3, 1), ([1, 6, 2, 2], 4, 3)]
)
def test_volume_batch_sampler_pins_volumes_to_workers(lengths: list[int], batch_size: int, workers: int) -> None:
    import pandas as pd

    from anomalib_medclip.data.volume_slices import VolumeBatchSampler

    paths = [f"v{i}.nii.gz" for i, n in enumerate(lengths) for _ in range(n)]
    samples = pd.DataFrame({"image_path": paths})
    batches = list(VolumeBatchSampler(samples, batch_size, workers))
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(paths)))  # every slice exactly once
    assert all(len(batch) <= batch_size and len({paths[i] for i in batch}) == 1 for batch in batches)
    owners: dict[str, set[int]] = {}
    for k, batch in enumerate(batches):
        owners.setdefault(paths[batch[0]], set()).add(k % max(1, workers))
    # all but possibly the volume taken over at the tail are read by one worker only
    assert sum(len(o) > 1 for o in owners.values()) <= 1
