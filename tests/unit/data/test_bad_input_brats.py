# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Issue 12, BraTS side: bad input gives a clear error or a warning with a documented, correct result, never a
silently wrong one. Every dataset root is made read-only and checked unchanged afterwards."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from anomalib_medclip.data import BraTS, BraTSDataset
from anomalib_medclip.data.nifti import lesion_mask, read_label_map, read_volume
from anomalib_medclip.data.volume_slices import NiftiSliceDataset
from anomalib_medclip.volumes import VolumeEvaluator
from anomalib_medclip.volumes.finalise import read_ground_truth

SHAPE = (12, 10, 8)
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _seg(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    rng = np.random.default_rng(seed)
    x, y = rng.integers(1, shape[0] - 4), rng.integers(1, shape[1] - 4)
    seg[x : x + 3, y : y + 3, 2:5] = rng.choice([1, 2, 3], size=(3, 3, 3))
    return seg


def _write_case(
    folder: Path,
    seed: int = 0,
    *,
    shape: tuple[int, ...] = SHAPE,
    affine: np.ndarray | None = None,
    seg: np.ndarray | None = None,
    seg_affine: np.ndarray | None = None,
    image: np.ndarray | None = None,
    modalities: tuple[str, ...] = ("t2w",),
) -> Path:
    """A case folder named like BraTS 2023 (``-``) or BraTS 2021 (``_``), with a lesion unless ``seg`` says not."""
    sep = "_" if folder.name.startswith("BraTS20") else "-"
    affine = np.eye(4) if affine is None else affine
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    if image is None:
        image = rng.uniform(10, 100, size=shape).astype(np.float32)
        image[0] = 0
    for modality in modalities:
        nib.save(nib.Nifti1Image(image, affine), folder / f"{folder.name}{sep}{modality}.nii.gz")
    seg = _seg(seed, shape) if seg is None else seg
    nib.save(
        nib.Nifti1Image(seg, affine if seg_affine is None else seg_affine), folder / f"{folder.name}{sep}seg.nii.gz"
    )
    return folder


def _messages(record: list[warnings.WarningMessage], pattern: str) -> list[str]:
    return [str(w.message) for w in record if re.search(pattern, str(w.message))]


# ----------------------------------------------------------------------------------------------- 1. duplicate ids
def test_same_case_name_in_two_batches_is_an_error_naming_both(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    first = _write_case(root / "batch1" / "BraTS-MET-00003-000", 0)
    second = _write_case(root / "batch2" / "BraTS-MET-00003-000", 1)  # another scan under the same name
    _write_case(root / "batch2" / "BraTS-MET-00004-000", 2)
    read_only(root)
    with pytest.raises(ValueError, match="must be unique") as error:
        BraTSDataset(root)
    assert f"BraTS-MET-00003-000: {first} and {second}" in str(error.value)
    with pytest.raises(ValueError, match="must be unique"):  # not a per-case problem: skip does not hide it
        BraTSDataset(root, on_error="skip")
    # one batch alone is read, one volume per case
    samples = BraTSDataset(root / "batch2").samples
    assert samples.groupby("volume_id").image_path.nunique().to_dict() == {
        "BraTS-MET-00003-000": 1,
        "BraTS-MET-00004-000": 1,
    }


# ----------------------------------------------------------------------------------------------- 2. affines
def test_segmentation_off_its_image_grid_is_refused_with_both_affines(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    bad = _write_case(root / "BraTS-MET-00001-000", 0, affine=LPS, seg_affine=np.eye(4))  # identity seg header
    _write_case(root / "BraTS-MET-00002-000", 1, affine=LPS)
    jitter = LPS.copy()
    jitter[:3, 3] += 2e-4  # float32 header round-off stays far below MONAI's 1e-3
    _write_case(root / "BraTS-MET-00003-000", 2, affine=LPS, seg_affine=jitter)
    read_only(root)
    image_affine = read_volume(bad / "BraTS-MET-00001-000-t2w.nii.gz").affine
    seg_affine = read_volume(bad / "BraTS-MET-00001-000-seg.nii.gz").affine
    with pytest.raises(ValueError, match="is not on the grid of its image") as error:
        BraTSDataset(root)
    text = str(error.value)
    assert str(bad / "BraTS-MET-00001-000-seg.nii.gz") in text
    assert "differ by up to 11 mm" in text
    with np.printoptions(precision=4, suppress=True):
        assert f"image:\n{image_affine}\nsegmentation:\n{seg_affine}" in text
    with pytest.warns(UserWarning, match="Skipping BraTS case BraTS-MET-00001-000: .*not on the grid"):
        samples = BraTSDataset(root, on_error="skip").samples
    assert sorted(set(samples.volume_id)) == ["BraTS-MET-00002-000", "BraTS-MET-00003-000"]


def test_folders_inside_a_case_folder_are_not_cases(tmp_path: Path, read_only: Callable) -> None:
    """Only batch folders are searched one level down: a case folder's sub-folders are never extra cases."""
    root = tmp_path / "met"
    _write_case(root / "BraTS-MET-00001-000", 0)
    _write_case(root / "BraTS-MET-00001-000" / "BraTS-MET-00002-000", 1)  # e.g. a stray copy inside a case
    read_only(root)
    assert sorted(set(BraTSDataset(root).samples.volume_id)) == ["BraTS-MET-00001-000"]


# ----------------------------------------------------------------------------------------------- 3. label values
@pytest.mark.parametrize("label", [4, 255, -1])
def test_labels_outside_the_convention_are_refused(tmp_path: Path, read_only: Callable, label: int) -> None:
    root = tmp_path / "met"
    seg = _seg(0).astype(np.int16)
    seg[0, 0, 0] = label
    seg_path = _write_case(root / "BraTS-MET-00001-000", 0, seg=seg) / "BraTS-MET-00001-000-seg.nii.gz"
    read_only(root)
    expected = f"Segmentation {seg_path} holds labels [{label}] outside the BraTS 2023 convention [0, 1, 2, 3]"
    with pytest.raises(ValueError, match=re.escape(expected)) as error:
        BraTSDataset(root)
    assert "labels found: " in str(error.value)
    assert ("resection cavity" in str(error.value)) == (label == 4)


def test_brats2021_labels(tmp_path: Path, read_only: Callable) -> None:
    """{0, 1, 2, 4} silently; label 3 (tumour in the releases that use it) counted as tumour with one warning."""
    root = tmp_path / "gli"
    seg_2021 = np.where(_seg(0) == 3, 4, _seg(0)).astype(np.uint8)
    _write_case(root / "BraTS2021_00001", 0, seg=seg_2021, modalities=("flair",))
    _write_case(root / "BraTS2021_00002", 1, modalities=("flair",))  # labels 1, 2, 3
    _write_case(root / "BraTS2021_00003", 2, modalities=("flair",))
    read_only(root)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        samples = BraTSDataset(root, modality="flair").samples
    [message] = _messages(record, "label 3")
    assert message.startswith("2 BraTS 2021-style case(s) hold label 3")
    assert "BraTS2021_00002, BraTS2021_00003" in message
    for volume_id, rows in samples.groupby("volume_id"):
        seg = np.asarray(nib.load(rows.mask_path.iloc[0]).dataobj)
        assert rows.label_index.tolist() == (seg > 0).any(axis=(0, 1)).astype(int).tolist(), volume_id
    other = tmp_path / "gli5"
    seg_5 = _seg(3)
    seg_5[0, 0, 0] = 5
    _write_case(other / "BraTS2021_00004", 3, seg=seg_5, modalities=("flair",))
    read_only(other)
    with pytest.raises(ValueError, match=re.escape("holds labels [5] outside the BraTS 2021 convention [0, 1, 2, 4]")):
        BraTSDataset(other, modality="flair")


# ----------------------------------------------------------------------------------------------- 4. one lesion rule
def test_interpolated_label_map_is_refused_everywhere(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    seg = np.zeros(SHAPE, np.float32)
    seg[3:7, 3:7, 2:5] = 0.6
    seg[2, 3:7, 2:5] = 0.4  # a label map resampled with linear interpolation
    seg_path = _write_case(root / "BraTS-MET-00001-000", 0, seg=seg) / "BraTS-MET-00001-000-seg.nii.gz"
    read_only(root)
    expected = f"Label map {seg_path} holds non-integer values (60 voxels, e.g. 0.4, 0.6)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        BraTSDataset(root)
    with pytest.raises(ValueError, match=re.escape(expected)):  # the 3D ground truth refuses it alike
        read_ground_truth(seg_path, read_volume(root / "BraTS-MET-00001-000" / "BraTS-MET-00001-000-t2w.nii.gz"))
    table = pd.DataFrame(
        {"image_path": [str(seg_path)], "mask_path": [str(seg_path)], "label_index": [1], "volume_id": ["v"]}
        | {"volume_index": [0], "slice_index": [2], "split": ["test"]}
    )
    table.attrs["task"] = "segmentation"
    with pytest.raises(ValueError, match=re.escape(expected)):  # and so does the served 2D mask
        NiftiSliceDataset(table)[0]


def test_slice_labels_2d_masks_and_3d_truth_agree(tmp_path: Path, read_only: Callable) -> None:
    """Whole-number labels stored as floats (and LPS order) are read; the three views of the lesion are one."""
    root = tmp_path / "met"
    seg = _seg(0).astype(np.float32)
    seg[5:9, 4:8, 5] = 2.0
    _write_case(root / "BraTS-MET-00001-000", 0, seg=seg, affine=LPS)
    read_only(root)
    dataset = BraTSDataset(root)
    row = dataset.samples.iloc[0]
    truth = read_ground_truth(row.mask_path, read_volume(row.image_path))
    assert int(truth.sum()) == int((seg > 0).sum()) == 43
    np.testing.assert_array_equal(truth, lesion_mask(read_label_map(row.mask_path).data))
    served = 0
    for index in range(len(dataset)):
        item, z = dataset[index], int(dataset.samples.slice_index.iloc[index])
        assert int(item.gt_mask.sum()) == int(truth[:, :, z].sum())
        assert int(item.gt_label) == int(truth[:, :, z].any()) == int(dataset.samples.label_index.iloc[index])
        served += int(item.gt_mask.sum())
    assert served == 43


# ----------------------------------------------------------------------------------------------- 5. empty image
def test_all_zero_image_with_a_lesion_is_named_at_set_up(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    _write_case(root / "BraTS-MET-00001-000", 0, image=np.zeros(SHAPE, np.float32))
    _write_case(root / "BraTS-MET-00002-000", 1)
    read_only(root)
    lesion = int((_seg(0) > 0).sum())
    with pytest.warns(UserWarning, match=re.escape(f"all-zero t2w image: BraTS-MET-00001-000 ({lesion} lesion voxels")):
        samples = BraTSDataset(root).samples
    assert set(samples.volume_id) == {"BraTS-MET-00001-000", "BraTS-MET-00002-000"}  # kept, and named


# ----------------------------------------------------------------------------------------------- 6. folder names
def test_folders_that_match_no_naming_are_listed_in_one_warning(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    _write_case(root / "BraTS-MET-00001-000", 0)
    _write_case(root / "BraTS-MET-3-000", 1)
    _write_case(root / "BraTS-MET-00003-000 copy", 2)
    _write_case(root / "batch2" / "BraTS-MET-00004-000", 3)
    _write_case(root / "batch2" / "BraTS-MET-00005-000.old", 4)
    (root / "notes").mkdir()
    (root / ".cache").mkdir()
    read_only(root)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        samples = BraTSDataset(root).samples
    [message] = _messages(record, "not BraTS case folders")
    assert message.startswith(f"Skipping 4 folder(s) under {root} that are not BraTS case folders: ")
    for name in ("'BraTS-MET-00003-000 copy'", "'BraTS-MET-3-000'", "'batch2/BraTS-MET-00005-000.old'", "'notes'"):
        assert name in message
    assert ".cache" not in message
    assert sorted(set(samples.volume_id)) == ["BraTS-MET-00001-000", "BraTS-MET-00004-000"]


def test_a_root_mixing_both_namings_is_read_whole(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "mixed"
    _write_case(root / "BraTS-MET-00001-000", 0, modalities=("t2f",))
    _write_case(root / "BraTS-MET-00002-000", 1, modalities=("t2f",))
    seg_2021 = np.where(_seg(2) == 3, 4, _seg(2)).astype(np.uint8)
    _write_case(root / "BraTS2021_00007", 2, seg=seg_2021, modalities=("flair",))
    read_only(root)
    with pytest.warns(UserWarning, match=r"mixes BraTS namings \(2 BraTS 2023 and 1 BraTS 2021 case folders\)"):
        samples = BraTSDataset(root, modality="flair").samples
    assert sorted(set(samples.volume_id)) == ["BraTS-MET-00001-000", "BraTS-MET-00002-000", "BraTS2021_00007"]
    paths = samples.groupby("volume_id").image_path.first()
    assert paths["BraTS2021_00007"].endswith("BraTS2021_00007_flair.nii.gz")
    assert paths["BraTS-MET-00001-000"].endswith("BraTS-MET-00001-000-t2f.nii.gz")
    assert len(samples) == 3 * SHAPE[2]


# ----------------------------------------------------------------------------------------------- 12. corrupt data
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header (first bytes of the gzip stream) still reads


def _evaluate(datamodule: BraTS, out: Path) -> dict:
    """Run the 3D evaluation on the test loader with perfect maps (the served ground truth), as anomalib would."""
    evaluator = VolumeEvaluator(brats_official=False)
    trainer = SimpleNamespace(default_root_dir=out, datamodule=datamodule, is_global_zero=True, world_size=1)
    module = SimpleNamespace(log=lambda *_, **__: None, hparams={})
    evaluator.on_test_start(trainer, module)
    for batch in datamodule.test_dataloader():
        maps = batch.gt_mask.float() * 0.9
        scored = dataclasses.replace(batch, anomaly_map=maps, pred_score=maps.flatten(1).amax(1))
        evaluator.on_test_batch_end(trainer, module, None, scored, 0)
    evaluator.on_test_epoch_end(trainer, module)
    return json.loads((out / "volumes" / "summary.json").read_text())


def test_on_error_skip_drops_a_case_whose_voxel_data_is_corrupt(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    for index in range(1, 5):
        _write_case(root / f"BraTS-MET-0000{index}-000", index)
    broken = root / "BraTS-MET-00002-000" / "BraTS-MET-00002-000-t2w.nii.gz"
    _truncate(broken)
    assert nib.load(broken).shape == SHAPE  # the header reads fine: only decoding finds the damage
    read_only(root)
    with pytest.raises(ValueError, match=re.escape(f"Cannot decode the voxel data of {broken}")):
        BraTS(root, test_ratio=1.0, val_ratio=0.0, num_workers=0).setup()  # raise: at set-up, not mid-run
    datamodule = BraTS(root, test_ratio=1.0, val_ratio=0.0, num_workers=0, eval_batch_size=5, on_error="skip")
    with pytest.warns(
        UserWarning,
        match=re.escape(f"Skipping BraTS case BraTS-MET-00002-000: Cannot decode the voxel data of {broken}"),
    ):
        datamodule.setup()
    summary = _evaluate(datamodule, tmp_path / "run")
    kept = ["BraTS-MET-00001-000", "BraTS-MET-00003-000", "BraTS-MET-00004-000"]
    assert summary["volumes"] == 3
    assert summary["volume_dice"] == {"mean": 1.0, "std": 0.0, "n": 3}
    table = pd.read_csv(tmp_path / "run" / "volumes" / "metrics_per_volume.csv")
    assert table.volume_id.tolist() == kept
    assert table.lesion_voxels.tolist() == [int((_seg(i) > 0).sum()) for i in (1, 3, 4)]
    written = sorted(p.name for p in (tmp_path / "run" / "volumes").glob("*_pred_mask.nii.gz"))
    assert written == [f"{v}_pred_mask.nii.gz" for v in kept]


def test_on_error_skip_also_drops_a_nan_image_at_set_up(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    _write_case(root / "BraTS-MET-00001-000", 0)
    _write_case(root / "BraTS-MET-00002-000", 1, image=np.full(SHAPE, np.nan, np.float32))
    read_only(root)
    with pytest.warns(UserWarning, match="Skipping BraTS case BraTS-MET-00002-000: .* holds 960 NaN"):
        samples = BraTSDataset(root, on_error="skip").samples
    assert set(samples.volume_id) == {"BraTS-MET-00001-000"}


# ----------------------------------------------------------------------------------------------- 16. z_range
def test_z_range_past_every_volume_names_the_depths(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    _write_case(root / "BraTS-MET-00001-000", 0)
    _write_case(root / "BraTS-MET-00002-000", 1, shape=(12, 10, 6))
    read_only(root)
    expected = (
        "z_range=(20, 30) selects no slice: it starts past the last slice of every volume "
        "(BraTS-MET-00001-000: 8 slices, BraTS-MET-00002-000: 6 slices)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        BraTS(root, slices="z_range", z_range=(20, 30), num_workers=0).setup()
    with pytest.raises(ValueError, match=re.escape("z_range=(5, 2); expected (first, stop)")):
        BraTSDataset(root, z_range=(5, 2))


def test_z_range_past_some_volumes_warns_and_keeps_the_rest(tmp_path: Path, read_only: Callable) -> None:
    root = tmp_path / "met"
    _write_case(root / "BraTS-MET-00001-000", 0)
    _write_case(root / "BraTS-MET-00002-000", 1, shape=(12, 10, 6))
    _write_case(root / "BraTS-MET-00003-000", 2, shape=(12, 10, 7))
    read_only(root)
    with pytest.warns(UserWarning, match=re.escape("z_range=(6, 8) reaches past the last slice of 2 volume(s)")) as w:
        samples = BraTSDataset(root, z_range=(6, 8)).samples
    assert "BraTS-MET-00002-000: 6 slices, BraTS-MET-00003-000: 7 slices" in str(w[0].message)
    assert "1 of them (BraTS-MET-00002-000) keep no slice" in str(w[0].message)
    assert samples.groupby("volume_id").slice_index.apply(list).to_dict() == {
        "BraTS-MET-00001-000": [6, 7],
        "BraTS-MET-00003-000": [6],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside every volume: no warning
        assert len(BraTSDataset(root, z_range=(1, 5))) == 3 * 4
    assert torch.is_tensor(BraTSDataset(root, z_range=(1, 5))[0].image)
