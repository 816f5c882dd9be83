# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Tests of NIfTI reading, canonical orientation, display orientation and their round trips."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from anomalib_medclip.data.nifti import (
    image_to_slice,
    read_geometry,
    read_volume,
    slice_to_image,
    to_canonical_orientation,
    to_source_orientation,
)

# Voxel axes stored as (S, P, L): a permuted and flipped, non-RAS affine with anisotropic voxels.
PERMUTED_LPS = np.array([[0.0, 0.0, -0.8, 40.0], [0.0, -1.2, 0.0, 30.0], [2.5, 0.0, 0.0, -20.0], [0, 0, 0, 1]])


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_canonical_matches_nibabel_and_round_trips(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).random((7, 5, 6)).astype(np.float32)
    path = _save(tmp_path / "a.nii.gz", raw, PERMUTED_LPS)
    volume = read_volume(path)
    reference = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_array_equal(volume.data, reference.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(volume.affine, reference.affine)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.spacing == pytest.approx((0.8, 1.2, 2.5))
    assert volume.source_shape == (7, 5, 6)
    np.testing.assert_array_equal(to_source_orientation(volume.data, volume.source_affine), raw)
    np.testing.assert_array_equal(to_canonical_orientation(raw, PERMUTED_LPS), volume.data)
    assert read_geometry(path)[0] == volume.data.shape
    np.testing.assert_allclose(read_geometry(path)[1], volume.affine)


def test_world_coordinates_are_preserved(tmp_path: Path) -> None:
    raw = np.zeros((7, 5, 6), np.float32)
    raw[1, 2, 3] = 1.0
    volume = read_volume(_save(tmp_path / "a.nii.gz", raw, PERMUTED_LPS))
    source_world = PERMUTED_LPS @ [1, 2, 3, 1]
    canonical_index = np.argwhere(volume.data == 1.0)[0]
    np.testing.assert_allclose(volume.affine @ [*canonical_index, 1], source_world)


def test_saved_source_orientation_overlays_the_scan(tmp_path: Path) -> None:
    raw = np.random.default_rng(1).random((7, 5, 6)).astype(np.float32)
    volume = read_volume(_save(tmp_path / "a.nii.gz", raw, PERMUTED_LPS))
    result = _save(tmp_path / "map.nii.gz", to_source_orientation(volume.data * 2, volume.source_affine), PERMUTED_LPS)
    np.testing.assert_allclose(nib.load(result).get_fdata(), raw * 2, rtol=1e-6)


def test_display_orientation_is_radiological() -> None:
    canonical = np.zeros((4, 3), np.float32)  # (X right-ward, Y anterior-ward)
    canonical[3, 2] = 1.0  # most right, most anterior voxel
    image = slice_to_image(canonical)
    assert image.shape == (3, 4)
    assert image[0, 0] == 1.0  # anterior at the top, patient's right on the image's left
    np.testing.assert_array_equal(image, np.fliplr(np.rot90(canonical)))
    np.testing.assert_array_equal(image_to_slice(image), canonical)


def test_four_d_singleton_is_accepted(tmp_path: Path) -> None:
    raw = np.random.default_rng(2).random((4, 5, 6, 1)).astype(np.float32)
    assert read_volume(_save(tmp_path / "a.nii.gz", raw, np.eye(4))).data.shape == (4, 5, 6)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (np.zeros((4, 5, 6, 2), np.float32), "expected a 3D volume"),
        (np.full((4, 5, 6), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((4, 5), np.float32), "expected a 3D volume"),
    ],
)
def test_invalid_volumes_name_the_file(tmp_path: Path, content: np.ndarray, match: str) -> None:
    path = _save(tmp_path / "bad.nii.gz", content, np.eye(4))
    with pytest.raises(ValueError, match=match) as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.nii.gz", np.ones((8, 8, 8), np.float32), np.eye(4))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated") as info:
        read_volume(truncated)
    assert str(truncated) in str(info.value)
    header_only = tmp_path / "header.nii.gz"
    header_only.write_bytes(gzip.compress(b"not a nifti header"))
    with pytest.raises(ValueError, match=re.escape(str(header_only))):
        read_volume(header_only)
    with pytest.raises(FileNotFoundError, match=re.escape("missing.nii.gz")):
        read_volume(tmp_path / "missing.nii.gz")
