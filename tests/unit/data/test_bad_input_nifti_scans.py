# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Issue 12, NiftiScans side: volume id collisions are errors naming both files; skipped files are listed."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from anomalib_medclip.data import NiftiScans, make_nifti_scans_dataset


def _scan(path: Path, depth: int, value: float = 1.0) -> Path:
    nib.save(nib.Nifti1Image(np.full((6, 5, depth), value, np.float32), np.eye(4)), path)
    return path


def test_same_volume_id_is_an_error_naming_both_files(tmp_path: Path, read_only: Callable[[Path], Path]) -> None:
    first = _scan(tmp_path / "x-t2w.nii", 3)
    second = _scan(tmp_path / "x-t2w.nii.gz", 4, value=2.0)  # another scan, same outputs x-t2w_*.nii.gz
    read_only(tmp_path)
    with pytest.raises(ValueError, match="have the same volume id 'x-t2w'") as error:
        NiftiScans(tmp_path, modality="t2w", num_workers=0).setup()
    assert f"{first} and {second}" in str(error.value)


def test_ids_differing_only_in_letter_case_collide(tmp_path: Path) -> None:
    _scan(tmp_path / "X-T2W.nii.gz", 3)
    _scan(tmp_path / "x-t2w.nii.gz", 3)
    with pytest.raises(ValueError, match=r"same volume id 'x-t2w'.*letter case ignored"):
        make_nifti_scans_dataset(tmp_path, modality="t2w")


def test_upper_case_extension_is_read_and_skips_are_listed(tmp_path: Path) -> None:
    _scan(tmp_path / "a-t2w.nii.gz", 3)
    _scan(tmp_path / "C-T2W.NII.GZ", 4)
    _scan(tmp_path / "d-t2w.nii.gz", 2).rename(tmp_path / "d-t2w.Nii.gz")  # nibabel cannot open a mixed-case .Nii
    _scan(tmp_path / "scan.nii.gz", 2)  # no modality in the name
    _scan(tmp_path / "a-t1n.nii.gz", 3)  # another modality: an expected skip, not listed
    _scan(tmp_path / "a-seg.nii.gz", 3)  # a segmentation: expected, not listed
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".DS_Store").write_text("x")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        samples = make_nifti_scans_dataset(tmp_path, modality="t2w")
    [message] = [str(w.message) for w in record if "NiftiScans skips" in str(w.message)]
    assert message.startswith(f"NiftiScans skips 3 file(s) in {tmp_path} that are not scans with modality 't2w': ")
    assert "'d-t2w.Nii.gz' (mixed-case extension that nibabel cannot open; rename it to .nii.gz)" in message
    assert "'notes.txt' (not a .nii/.nii.gz file)" in message
    assert "'scan.nii.gz' (name does not end in a modality" in message
    assert not re.search(r"t1n|seg|DS_Store", message)
    assert samples.groupby("volume_id").size().to_dict() == {"C-T2W": 4, "a-t2w": 3}


def test_without_modality_segmentations_are_an_expected_skip(tmp_path: Path) -> None:
    _scan(tmp_path / "a-t2w.nii.gz", 3)
    _scan(tmp_path / "a-seg.nii.gz", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(make_nifti_scans_dataset(tmp_path).volume_id) == {"a-t2w"}
