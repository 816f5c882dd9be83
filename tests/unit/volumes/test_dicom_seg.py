# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Issue 16, DICOM-SEG out: the mask's frames align with the source instances and sit at the right world place."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

hd = pytest.importorskip("highdicom", reason="the optional extra `dicom`")

import pydicom  # noqa: E402

from anomalib_medclip import __version__  # noqa: E402
from anomalib_medclip.data.dicom import series_ref  # noqa: E402
from anomalib_medclip.data.nifti import read_volume  # noqa: E402
from anomalib_medclip.volumes.dicom_seg import write_dicom_seg  # noqa: E402
from tests.unit.data.dicom_series import BRIGHT, CENTRE, GEOMETRIES, cube_values, write_series  # noqa: E402

UID = "1.2.826.0.1.3680043.8.498.1"


def _seg_centre_error_voxels(seg: pydicom.Dataset) -> float:
    """World centre of the SEG's foreground from its own geometry (PS3.3 C.7.6.2.1.1, numpy), vs ``CENTRE``, voxels."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    orientation = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    spacing = np.asarray(shared.PixelMeasuresSequence[0].PixelSpacing, float)  # (between rows, between columns)
    axes = np.stack([orientation[:3] * spacing[1], orientation[3:] * spacing[0]], axis=1)
    points = []
    for frame, group in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence, strict=True):
        rows, columns = np.nonzero(frame)
        origin = np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float)
        points.append(origin + np.stack([columns, rows], axis=1) @ axes.T)
    centre = np.concatenate(points).mean(axis=0)
    positions = [
        np.asarray(g.PlanePositionSequence[0].ImagePositionPatient, float) for g in seg.PerFrameFunctionalGroupsSequence
    ]
    grid = np.column_stack([axes, (positions[-1] - positions[0]) / (len(positions) - 1)])
    return float(np.abs(np.linalg.solve(grid, centre - CENTRE)).max())


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_seg_frames_align_with_the_source_instances(name: str, tmp_path: Path) -> None:
    geometry = GEOMETRIES[name]
    files = write_series(tmp_path / "series", geometry)  # by slice k (the file names are shuffled)
    sources = [pydicom.dcmread(file) for file in files]
    image = read_volume(series_ref(tmp_path / "series", UID))
    path = write_dicom_seg(tmp_path / "x_seg.dcm", image.data == BRIGHT, image, "VanillaCLIP", 0.5)
    seg = pydicom.dcmread(path)
    assert seg.Modality == "SEG"
    assert seg.ContentDescription == seg.SeriesDescription == f"VanillaCLIP anomalib-medclip {__version__} thr 0.5"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("VanillaCLIP", __version__)
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == UID
    expected = (cube_values(geometry) == BRIGHT).transpose(2, 1, 0)  # (instance, row, column)
    # one frame per source instance (empty ones too), each referencing its instance, at its position, with its mask
    instance = {source.SOPInstanceUID: k for k, source in enumerate(sources)}
    referenced = []
    for frame, group in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence, strict=True):
        k = instance[group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        position = np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float)
        assert np.allclose(position, np.asarray(sources[k].ImagePositionPatient, float), atol=1e-4)
        assert np.array_equal(frame, expected[k])
        referenced.append(k)
    assert sorted(referenced) == list(range(len(sources)))
    assert _seg_centre_error_voxels(seg) <= 0.5
    # highdicom reads it back, frame by source instance
    read = hd.seg.segread(path)
    pixels = read.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], segment_numbers=[1])
    assert np.array_equal(pixels[..., 0], expected)


def test_missing_highdicom_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(tmp_path, GEOMETRIES["axial"])
    image = read_volume(series_ref(tmp_path, UID))
    monkeypatch.setitem(sys.modules, "highdicom", None)
    with pytest.raises(ImportError, match=r'pip install "anomalib-medclip\[dicom\]"'):
        write_dicom_seg(tmp_path / "x_seg.dcm", image.data > 0, image, "VanillaCLIP", 0.5)
