# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Issue 16 acceptance: ``anomalib predict --data NiftiScans --data.path <DICOM folder>`` (stock CLI, subprocesses).

The folder holds two generated series (an oblique and an anisotropic one). Only the planted cube has intensity > 0,
so it is the "brain" the 3D evaluation counts (``brain_only``): every non-zero voxel of the written anomaly map must
lie inside the cube at its world coordinates, computed here from the written NIfTI's affine, and the DICOM-SEG's
frames must equal the written NIfTI mask instance by instance, at the source instances' positions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highdicom", reason="the optional extra `dicom`")

import nibabel as nib
import pydicom

from tests.integration.test_registration import ANOMALIB, DEMO, EPOCH, TINY, _run
from tests.unit.data.dicom_series import CENTRE, GEOMETRIES, HALF, write_series

SERIES = {"oblique": ("1.2.826.0.1.3680043.8.498.11", 4), "anisotropic": ("1.2.826.0.1.3680043.8.498.12", 5)}
LPS = np.diag([-1.0, -1.0, 1.0])


def test_predict_on_a_dicom_folder_writes_nifti_and_dicom_seg_over_the_series(tmp_path: Path) -> None:
    folder = tmp_path / "dicom"
    files = {
        name: write_series(folder, GEOMETRIES[name], series_uid=uid, series_number=number)
        for name, (uid, number) in SERIES.items()
    }
    model = ["--model", "VanillaCLIP", *TINY]
    common = ["--data.num_workers", "0", "--trainer.accelerator", "cpu"]
    train = [*model, *DEMO, *EPOCH, "--data.root", str(tmp_path / "demo"), *common]
    proc = _run([ANOMALIB, "train", *train, "--default_root_dir", str(tmp_path / "results")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = (tmp_path / "results").rglob("model.ckpt")
    predict = [*model, "--ckpt_path", str(ckpt), "--data", "NiftiScans", "--data.path", str(folder), *common]
    proc = _run([ANOMALIB, "predict", *predict], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, (uid, number) in SERIES.items():
        geometry, sources = GEOMETRIES[name], [pydicom.dcmread(file) for file in files[name]]
        volume_id = f"dicom_s{number}"
        (report_path,) = (tmp_path / "results").rglob(f"volumes*/{volume_id}.json")
        report = json.loads(report_path.read_text())
        assert report["series"]["SeriesInstanceUID"] == uid
        assert report["series"]["StudyInstanceUID"] == sources[0].StudyInstanceUID
        assert report["series"]["Modality"] == "MR"
        score = nib.load(report_path.parent / f"{volume_id}_anomaly_map.nii.gz")
        mask = nib.load(report_path.parent / f"{volume_id}_pred_mask.nii.gz")
        # the NIfTI files are on the series' own grid: (column, row, instance), the DICOM geometry turned to RAS
        assert score.shape == mask.shape == geometry.shape
        assert np.allclose(LPS @ score.affine[:3], geometry.lps_affine()[:3], atol=1e-4)
        support = np.argwhere(np.asarray(score.dataobj) > 0)
        assert len(support) > 0
        world = LPS @ (score.affine[:3, :3] @ support.T + score.affine[:3, 3:4])
        assert np.abs(world.T - CENTRE).max() <= HALF + 1e-6  # only the cube's voxels score
        # the DICOM-SEG: frame of instance k = the NIfTI mask's slice k, at instance k's position
        seg = pydicom.dcmread(report_path.parent / f"{volume_id}_seg.dcm")
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
        assert "VanillaCLIP" in seg.ContentDescription
        assert f"thr {report['threshold']:.3g}" in seg.ContentDescription
        instance = {source.SOPInstanceUID: k for k, source in enumerate(sources)}
        written = np.asarray(mask.dataobj)
        assert written.any()  # (the cube is predicted: the frame check below is not about empty frames only)
        for frame, group in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence, strict=True):
            k = instance[group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
            assert np.array_equal(frame, written[:, :, k].T)
            position = np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float)
            assert np.allclose(position, np.asarray(sources[k].ImagePositionPatient, float), atol=1e-4)
