# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Stacking by slice index, orientation, post-processing and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from anomalib_medclip.data.nifti import read_volume, slice_to_image, to_source_orientation
from anomalib_medclip.utils import write_atomic
from anomalib_medclip.volumes import remove_small_components, stack_slices, write_nifti


def test_served_slices_stack_back_to_the_canonical_volume_in_any_order() -> None:
    volume = np.random.default_rng(0).random((7, 9, 5)).astype(np.float32)
    served = {z: slice_to_image(volume[:, :, z]) for z in range(5)}
    shuffled = {z: served[z] for z in (3, 0, 4, 1, 2)}
    assert np.array_equal(stack_slices(shuffled, volume.shape), volume)
    partial = stack_slices({1: served[1]}, volume.shape)
    assert np.array_equal(partial[:, :, 1], volume[:, :, 1])
    assert not partial[:, :, [0, 2, 3, 4]].any()


def test_model_resolution_maps_are_resized_to_native() -> None:
    stacked = stack_slices({0: np.ones((4, 4), np.float16)}, (10, 12, 1))
    assert stacked.shape == (10, 12, 1)
    assert np.allclose(stacked, 1.0)
    with pytest.raises(ValueError, match="Slice index 3 is outside"):
        stack_slices({3: np.ones((4, 4))}, (10, 12, 2))


def test_small_components_are_removed() -> None:
    mask = np.zeros((12, 12, 12), bool)
    mask[1:5, 1:5, 1:5] = True  # 64 voxels
    mask[8, 8, 8] = True  # 1 voxel
    kept = remove_small_components(mask, min_voxels=10)
    _, n = ndimage.label(kept, structure=np.ones((3, 3, 3)))
    assert n == 1
    assert kept.sum() == 64
    assert np.array_equal(remove_small_components(mask, 0), mask)


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out" / "map.nii.gz"

    def explode(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        msg = "disk full"
        raise OSError(msg)

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, explode)
    assert list((tmp_path / "out").iterdir()) == []
    write_atomic(target, lambda tmp: tmp.write_bytes(b"ok"))
    assert target.read_bytes() == b"ok"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["map.nii.gz"]


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        path = write_atomic(tmp_path / "out" / "summary.json", lambda tmp: tmp.write_text("{}"))
    finally:
        os.umask(previous)
    assert path.read_text() == "{}"
    assert path.stat().st_mode & 0o777 == 0o640  # group-readable like a plain open(), not mkstemp's 0o600
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


@pytest.mark.parametrize("codes", [(1, 1), (1, 0), (0, 2)])
def test_written_maps_keep_the_source_space(tmp_path: Path, codes: tuple[int, int]) -> None:
    """qform/sform codes and spatial units of the source survive; the affine nibabel reads back is the source's."""
    affine = np.array([[0.0, -1.0, 0, 20], [-1.5, 0, 0, 30], [0, 0, 2.0, -5], [0, 0, 0, 1]])
    source = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), affine)
    source.set_qform(affine, code=codes[0])
    source.set_sform(affine, code=codes[1])
    source.header.set_xyzt_units("mm", "sec")
    nib.save(source, tmp_path / "scan.nii.gz")
    volume = read_volume(tmp_path / "scan.nii.gz")
    mask = to_source_orientation(np.zeros(volume.data.shape, np.uint8), volume.source_affine)
    written = nib.load(write_nifti(tmp_path / "out" / "mask.nii.gz", mask, volume.source_affine, volume.space))
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == codes
    assert written.header.get_xyzt_units() == ("mm", "sec")
    assert np.allclose(written.affine, nib.load(tmp_path / "scan.nii.gz").affine)
    assert np.allclose(written.affine, affine)
    plain = nib.load(write_nifti(tmp_path / "out" / "plain.nii.gz", mask, volume.source_affine))
    assert int(plain.header["qform_code"]) == 0  # what nibabel alone writes (the reason for ``space``)
    assert plain.header.get_xyzt_units()[0] == "unknown"
