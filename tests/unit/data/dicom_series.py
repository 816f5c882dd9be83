# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Synthetic DICOM series written with pydicom: a bright cube planted at known world (LPS) coordinates.

Each voxel's world position is computed from the DICOM definition (``IPP + c * Δc * row_dir + r * Δr * col_dir``
per instance), independently of the reader under test; the cube is every voxel within ``HALF`` mm of ``CENTRE``
(max-norm along the world axes). Stored as 12-bit unsigned values with a rescale slope and intercept.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CENTRE = np.array([2.0, -4.0, 3.0])
"""The cube's centre in LPS mm."""
HALF = 6.0
BACKGROUND, BRIGHT = -100.0, 1500.0
SLOPE, INTERCEPT = 2.0, -1024.0


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a, (i, j) = np.deg2rad(degrees), [(1, 2), (0, 2), (0, 1)][axis]
    rot = np.eye(3)
    rot[i, i] = rot[j, j] = np.cos(a)
    rot[i, j], rot[j, i] = -np.sin(a), np.sin(a)
    return rot


@dataclass(frozen=True)
class Geometry:
    """One acquisition: row/column directions (LPS), (columns, rows, slices), (Δc, Δr, slice step) in mm."""

    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    shape: tuple[int, int, int] = (28, 26, 20)
    spacing: tuple[float, float, float] = (1.5, 1.5, 2.0)

    def lps_affine(self) -> np.ndarray:
        """Voxel ``(c, r, k)`` to LPS, with the stack centred on the origin."""
        row, col = np.asarray(self.row_dir), np.asarray(self.col_dir)
        normal = np.cross(row, col)
        axes = np.stack([row * self.spacing[0], col * self.spacing[1], normal * self.spacing[2]], axis=1)
        affine = np.eye(4)
        affine[:3, :3] = axes
        affine[:3, 3] = -axes @ ((np.asarray(self.shape) - 1) / 2)
        return affine


_OBLIQUE = _rotation(2, 15) @ _rotation(0, 20)
GEOMETRIES = {
    "axial": Geometry((1, 0, 0), (0, 1, 0)),
    "sagittal": Geometry((0, 1, 0), (0, 0, -1), shape=(26, 24, 24)),
    "oblique": Geometry(tuple(_OBLIQUE[:, 0]), tuple(_OBLIQUE[:, 1])),
    "anisotropic": Geometry((1, 0, 0), (0, 1, 0), shape=(32, 28, 12), spacing=(0.8, 1.2, 3.0)),
}


def world_lps(geometry: Geometry) -> np.ndarray:
    """LPS position of every voxel, shape ``(C, R, K, 3)``."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in geometry.shape), indexing="ij"), axis=-1)
    affine = geometry.lps_affine()
    return index @ affine[:3, :3].T + affine[:3, 3]


def cube_values(geometry: Geometry) -> np.ndarray:
    """Modality values ``(C, R, K)``: ``BRIGHT`` within ``HALF`` mm of ``CENTRE``, else ``BACKGROUND``."""
    inside = np.abs(world_lps(geometry) - CENTRE).max(axis=-1) <= HALF
    faces = [np.take(inside, i, axis=a) for a in range(3) for i in (0, -1)]
    assert not any(face.any() for face in faces), "the cube must lie inside the field of view"
    return np.where(inside, BRIGHT, BACKGROUND)


def write_series(
    folder: Path,
    geometry: Geometry,
    *,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    series_number: int = 1,
    study_uid: str = "1.2.826.0.1.3680043.8.498.100",
    values: np.ndarray | None = None,
) -> list[Path]:
    """Write one single-frame MR instance per slice (files named in shuffled order); returns the files by slice."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    values = cube_values(geometry) if values is None else values
    affine = geometry.lps_affine()
    frame_uid = generate_uid(entropy_srcs=[study_uid, "frame"])
    order = np.random.default_rng(series_number).permutation(geometry.shape[2])
    files = []
    for k in range(geometry.shape[2]):
        sop_uid = generate_uid(entropy_srcs=[series_uid, str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"im{series_number}_{order[k]:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "P1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime = datetime.date(2026, 1, 1).strftime("%Y%m%d"), "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "A1", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", series_number, k + 1
        ds.Manufacturer, ds.SeriesDescription = "synthetic", f"cube {series_number}"
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*geometry.row_dir, *geometry.col_dir)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in affine[:3, :3] @ [0, 0, k] + affine[:3, 3]]
        ds.PixelSpacing = [geometry.spacing[1], geometry.spacing[0]]  # (between rows, between columns)
        ds.SliceThickness = geometry.spacing[2]
        ds.Rows, ds.Columns = geometry.shape[1], geometry.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = SLOPE, INTERCEPT, "US"
        stored = np.round((values[:, :, k].T - INTERCEPT) / SLOPE).astype(np.uint16)  # (rows, columns)
        assert stored.max() < 4096
        ds.PixelData = stored.tobytes()
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files
