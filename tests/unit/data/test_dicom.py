# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Issue 16, DICOM series in: geometry of four acquisitions, maps written back over the series, refusals."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("pydicom", reason="the optional extra `dicom`")

import pydicom

from anomalib_medclip.data import make_nifti_scans_dataset
from anomalib_medclip.data.dicom import find_series, series_ref
from anomalib_medclip.data.nifti import read_geometry, read_volume, to_source_orientation
from anomalib_medclip.volumes.stacking import write_nifti
from tests.unit.data.dicom_series import (
    BACKGROUND,
    BRIGHT,
    CENTRE,
    GEOMETRIES,
    Geometry,
    cube_values,
    write_series,
)

UID = "1.2.826.0.1.3680043.8.498.1"
LPS = np.diag([-1.0, -1.0, 1.0])


def _centroid_error_voxels(mask: np.ndarray, ras_affine: np.ndarray) -> float:
    """Largest per-axis distance, in voxels, between a mask's world centre (through ``ras_affine``) and ``CENTRE``."""
    centre_lps = LPS @ (ras_affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + ras_affine[:3, 3])
    return float(np.abs(np.linalg.solve(ras_affine[:3, :3], LPS @ (centre_lps - CENTRE))).max())


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_cube_lands_at_its_world_coordinates(name: str, tmp_path: Path) -> None:
    geometry = GEOMETRIES[name]
    write_series(tmp_path / "series", geometry)
    volume = read_volume(series_ref(tmp_path / "series", UID))
    # modality values: the 12-bit stored values through RescaleSlope/Intercept, exactly
    assert set(np.unique(volume.data)) == {BACKGROUND, BRIGHT}
    assert volume.series["SeriesInstanceUID"] == UID
    assert volume.series["Modality"] == "MR"
    # canonical (RAS+) order: the affine's axes point along +x, +y, +z
    assert (np.argmax(np.abs(volume.affine[:3, :3]), axis=0) == [0, 1, 2]).all()
    assert (np.diag(volume.affine[:3, :3])[np.abs(np.diag(volume.affine[:3, :3])) > 0.5] > 0).all()
    assert (volume.data == BRIGHT).sum() == (cube_values(geometry) == BRIGHT).sum() > 0
    assert _centroid_error_voxels(volume.data == BRIGHT, volume.affine) <= 0.5
    # written back like a predicted map (VolumeReport.write_maps): it overlays the series voxel for voxel
    out = write_nifti(
        tmp_path / "map.nii.gz",
        to_source_orientation((volume.data == BRIGHT).astype(np.uint8), volume.source_affine),
        volume.source_affine,
        volume.space,
    )
    written = nib.load(out)
    assert np.array_equal(np.asarray(written.dataobj) == 1, cube_values(geometry) == BRIGHT)  # (column, row, slice)
    assert np.allclose(LPS @ written.affine[:3], geometry.lps_affine()[:3], atol=1e-4)  # the DICOM geometry, numpy
    assert int(written.header["qform_code"]) == 1
    assert int(written.header["sform_code"]) == 1
    assert _centroid_error_voxels(np.asarray(written.dataobj) == 1, written.affine) <= 0.5
    assert read_geometry(series_ref(tmp_path / "series", UID)) == (volume.data.shape, pytest.approx(volume.affine))


def test_several_series_are_one_scan_each_named_by_series(tmp_path: Path) -> None:
    write_series(tmp_path, GEOMETRIES["axial"], series_number=3)
    write_series(tmp_path, GEOMETRIES["sagittal"], series_uid="1.2.826.0.1.3680043.8.498.2", series_number=7)
    (tmp_path / "notes.txt").write_text("x")
    samples = make_nifti_scans_dataset(tmp_path)
    sizes = samples.groupby("volume_id").size().to_dict()
    assert sizes == {f"{tmp_path.name}_s3": 20, f"{tmp_path.name}_s7": 24}  # axial slices of the canonical grid
    assert set(samples.image_path) == {series_ref(tmp_path, UID), series_ref(tmp_path, "1.2.826.0.1.3680043.8.498.2")}


def _refusal(tmp_path: Path) -> str:
    with pytest.raises(ValueError, match=f"^DICOM series {UID} in {tmp_path}: ") as error:
        read_volume(series_ref(tmp_path, UID))
    return str(error.value)


def test_missing_slice_is_refused(tmp_path: Path) -> None:
    files = write_series(tmp_path, GEOMETRIES["axial"])
    files[5].unlink()
    assert "not evenly spaced (step 2 mm, but 4 mm after" in _refusal(tmp_path)


def test_mixed_series_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", GEOMETRIES["axial"])
    write_series(tmp_path / "a", GEOMETRIES["sagittal"], series_number=2)  # same UID, other orientation
    assert "the instances mix 2 different orientations" in _refusal(tmp_path / "a")


def test_repeated_acquisition_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path, GEOMETRIES["axial"])
    write_series(tmp_path, GEOMETRIES["axial"], series_number=2)  # same UID, same positions again
    assert "two instances lie at the same position" in _refusal(tmp_path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    files = write_series(tmp_path, GEOMETRIES["axial"])
    files[3].write_bytes(files[3].read_bytes()[:-200])
    message = _refusal(tmp_path)
    assert f"{files[3].name}" in message
    assert "truncated" in message


def test_non_image_instance_is_refused(tmp_path: Path) -> None:
    files = write_series(tmp_path, GEOMETRIES["axial"])
    ds = pydicom.dcmread(files[0])
    del ds.PixelData
    ds.Modality = "SR"
    ds.save_as(tmp_path / "report.dcm")
    assert "report.dcm is not an image (modality SR, no pixel data)" in _refusal(tmp_path)


def test_on_error_skip_keeps_the_readable_series(tmp_path: Path) -> None:
    write_series(tmp_path, GEOMETRIES["axial"], series_number=1)
    broken = write_series(tmp_path, GEOMETRIES["axial"], series_uid="1.2.826.0.1.3680043.8.498.9", series_number=2)
    broken[4].unlink()
    with pytest.raises(ValueError, match="not evenly spaced"):
        make_nifti_scans_dataset(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        samples = make_nifti_scans_dataset(tmp_path, on_error="skip")
    [message] = [str(w.message) for w in record if "NiftiScans skips scan" in str(w.message)]
    assert "1.2.826.0.1.3680043.8.498.9" in message
    assert "not evenly spaced" in message
    assert set(samples.volume_id) == {f"{tmp_path.name}_s1"}


def test_single_dicom_file_points_at_its_folder(tmp_path: Path) -> None:
    files = write_series(tmp_path, GEOMETRIES["axial"])
    with pytest.raises(FileNotFoundError, match=f"a single DICOM file; pass its folder \\({tmp_path}\\)"):
        make_nifti_scans_dataset(files[0])


def test_missing_pydicom_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(tmp_path, Geometry((1, 0, 0), (0, 1, 0), shape=(4, 4, 2)), values=np.zeros((4, 4, 2)))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r'pip install "anomalib-medclip\[dicom\]"'):
        find_series(tmp_path)


def test_folder_grouping_follows_changes_to_the_folder(tmp_path: Path) -> None:
    files = write_series(tmp_path, GEOMETRIES["axial"])
    assert list(find_series(tmp_path)) == [UID]
    write_series(tmp_path, GEOMETRIES["axial"], series_uid="1.2.826.0.1.3680043.8.498.2", series_number=2)
    assert sorted(find_series(tmp_path)) == [UID, "1.2.826.0.1.3680043.8.498.2"]
    files[0].unlink()
    assert len(find_series(tmp_path)[UID]) == len(files) - 1


def test_multi_frame_instance_is_refused(tmp_path: Path) -> None:
    files = write_series(tmp_path, GEOMETRIES["axial"])
    ds = pydicom.dcmread(files[2])
    ds.NumberOfFrames = 2
    ds.save_as(files[2])
    assert f"{files[2].name} is a multi-frame instance" in _refusal(tmp_path)
