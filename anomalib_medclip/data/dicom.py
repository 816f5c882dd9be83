# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""DICOM series as :class:`~anomalib_medclip.data.nifti.Volume` s, in the same canonical orientation as NIfTI.

A folder of single-frame DICOM image files may hold several series; each series (``SeriesInstanceUID``) is one
scan. A series is addressed by any of its instance files (:func:`series_ref` picks the first by name): a DICOM file
given to :func:`~anomalib_medclip.data.nifti.read_volume` or :func:`~anomalib_medclip.data.nifti.read_geometry`
stands for the whole series it belongs to (the files of its folder with its ``SeriesInstanceUID``), so the slice
datasets and the 3D evaluation read DICOM exactly as they read NIfTI, through a path that exists.

Geometry (DICOM PS3.3 C.7.6.2.1.1, with pydicom reading the headers): the instances are sorted by the projection of
``ImagePositionPatient`` on the slice normal (the cross product of the two ``ImageOrientationPatient`` directions);
voxel ``(i, j, k)`` (column ``i``, row ``j`` of instance ``k``) lies at ``IPP_0 + i * Δc * row_dir + j * Δr * col_dir
+ k * step`` in LPS mm, where ``(Δr, Δc) = PixelSpacing`` and ``step`` is the mean position step. The affine is
turned to RAS (x and y negated), the NIfTI convention, so :func:`to_source_orientation` and a NIfTI written with
``Volume.source_affine`` overlay the series voxel for voxel. Intensities are the modality values
(``RescaleSlope``/``RescaleIntercept`` applied).

Refused, with an error naming the folder and the series: a non-image instance (no pixel data: SR, an existing SEG,
presentation states), a multi-frame instance, a series mixing orientations, sizes or pixel spacings (two
acquisitions under one UID), two instances at one position, missing slices (irregular steps between positions),
fewer than two slices, and pixel data that cannot be decoded (a truncated file). pydicom is the optional extra
``dicom`` (``pip install "anomalib-medclip[dicom]"``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DicomSeries",
    "find_series",
    "is_dicom_file",
    "is_series_ref",
    "read_series",
    "series_geometry",
    "series_ref",
]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_POSITION_RTOL = 0.01
"""Relative tolerance on the steps between slice positions (missing slices make a step at least twice as large)."""
_FOLDERS: dict[tuple, dict[str, tuple[Path, ...]]] = {}
_FOLDERS_KEPT = 8
_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
_SERIES_TAGS = ("SeriesInstanceUID", "StudyInstanceUID", "Modality", "SeriesNumber", "SeriesDescription")


def _pydicom() -> Any:
    """The ``pydicom`` module, or an ``ImportError`` that names the extra to install."""
    try:
        import pydicom
    except ImportError as err:
        msg = 'Reading DICOM series needs pydicom: pip install "anomalib-medclip[dicom]".'
        raise ImportError(msg) from err
    return pydicom


def is_dicom_file(path: Path) -> bool:
    """Whether a file carries the DICOM Part 10 preamble (``DICM`` at byte 128); reads 132 bytes only."""
    try:
        with Path(path).open("rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def series_ref(folder: str | Path, uid: str) -> str:
    """The reference of series ``uid`` of ``folder`` (its first instance file by name) for ``read_volume``.

    Raises:
        FileNotFoundError: If ``folder`` holds no instance of the series.
    """
    files = find_series(folder).get(uid)
    if not files:
        msg = f"DICOM folder {folder} holds no instance of series {uid}."
        raise FileNotFoundError(msg)
    return str(files[0])


def is_series_ref(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file (not named ``.nii``/``.nii.gz``), i.e. stands for its series."""
    return not str(path).lower().endswith((".nii", ".nii.gz")) and is_dicom_file(Path(path))


def _split_ref(ref: str | Path) -> tuple[Path, str]:
    """``(folder, SeriesInstanceUID)`` of the series an instance file belongs to."""
    ref = Path(ref)
    uid = str(_pydicom().dcmread(ref, stop_before_pixels=True).get("SeriesInstanceUID", ""))
    return ref.parent, uid


def find_series(folder: str | Path) -> dict[str, list[Path]]:
    """The DICOM files of ``folder`` (not recursive, hidden files skipped) grouped by ``SeriesInstanceUID``.

    The grouping of the last few folders is kept while their files' names, sizes and modification times are
    unchanged: every series of a folder is looked up several times (table, serving, 3D evaluation), and reading
    every header of a large study each time would dominate.

    Raises:
        ValueError: If a file with the DICOM preamble has no ``SeriesInstanceUID`` or an unreadable header.
    """
    pydicom = _pydicom()
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    key = (str(folder.resolve()), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key in _FOLDERS:
        return {uid: list(members) for uid, members in _FOLDERS[key].items()}
    series: dict[str, list[Path]] = defaultdict(list)
    for file in files:
        if not is_dicom_file(file):
            continue
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True)
        except (OSError, ValueError, pydicom.errors.InvalidDicomError) as err:
            msg = f"DICOM folder {folder}: cannot read the header of {file.name}: {err}. Remove or re-export the file."
            raise ValueError(msg) from err
        uid = str(header.get("SeriesInstanceUID", ""))
        if not uid:
            msg = f"DICOM folder {folder}: {file.name} has no SeriesInstanceUID; it is not a valid DICOM instance."
            raise ValueError(msg)
        series[uid].append(file)
    if len(_FOLDERS) >= _FOLDERS_KEPT:
        _FOLDERS.pop(next(iter(_FOLDERS)))
    _FOLDERS[key] = {uid: tuple(members) for uid, members in series.items()}
    return dict(series)


@dataclass(frozen=True)
class DicomSeries:
    """One series' sorted instances, geometry and identity.

    Attributes:
        files: Instance files sorted along the slice normal.
        shape: Source voxel shape ``(columns, rows, slices)``.
        affine: Source voxel-to-world ``(4, 4)`` affine in RAS mm (NIfTI convention).
        identity: ``SeriesInstanceUID``, ``StudyInstanceUID``, ``Modality``, ``SeriesNumber``, ``SeriesDescription``.
    """

    files: tuple[Path, ...]
    shape: tuple[int, int, int]
    affine: np.ndarray
    identity: dict[str, str]


def _fail(folder: Path, uid: str, problem: str) -> ValueError:
    return ValueError(f"DICOM series {uid} in {folder}: {problem}")


def _same(values: list[Any], what: str, folder: Path, uid: str) -> Any:
    """The one value all instances share, else the 'mixed series' error."""
    distinct = {tuple(np.round(np.asarray(v, np.float64).ravel(), 4)) for v in values}
    if len(distinct) > 1:
        raise _fail(
            folder, uid, f"the instances mix {len(distinct)} different {what} ({sorted(distinct)[:3]}): two "
            "acquisitions share one SeriesInstanceUID. Separate them into their own series (or folders).",
        )  # fmt: skip
    return values[0]


def series_geometry(ref: str | Path) -> DicomSeries:
    """Read the headers of one series (``ref``: one of its files; no pixel data) and check it is a regular stack.

    Raises:
        FileNotFoundError: If the folder holds no instance of the series (``ref`` has no SeriesInstanceUID).
        ValueError: For the refusals listed in the module docstring.
    """
    pydicom = _pydicom()
    folder, uid = _split_ref(ref)
    files = find_series(folder).get(uid)
    if not files:
        msg = f"DICOM folder {folder} holds no instance of series {uid}."
        raise FileNotFoundError(msg)
    headers = [pydicom.dcmread(file, defer_size=1024) for file in files]  # pixel data deferred, not read
    for file, header in zip(files, headers, strict=True):
        if "PixelData" not in header and "FloatPixelData" not in header:
            modality = header.get("Modality", "?")
            raise _fail(folder, uid, f"{file.name} is not an image (modality {modality}, no pixel data).")
        if int(header.get("NumberOfFrames", 1) or 1) > 1:
            raise _fail(
                folder, uid, f"{file.name} is a multi-frame instance; only single-frame series are read. Convert it "
                "to NIfTI (e.g. dcm2niix) and pass the .nii.gz.",
            )  # fmt: skip
        missing = [tag for tag in _GEOMETRY_TAGS if tag not in header]
        if missing:
            raise _fail(folder, uid, f"{file.name} has no {', '.join(missing)}: its voxels cannot be placed in space.")
    orientation = np.asarray(_same([h.ImageOrientationPatient for h in headers], "orientations", folder, uid), float)
    rows, columns = _same([(h.Rows, h.Columns) for h in headers], "image sizes", folder, uid)
    spacing = np.asarray(_same([h.PixelSpacing for h in headers], "pixel spacings", folder, uid), float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray([h.ImagePositionPatient for h in headers], float)
    order = np.argsort(positions @ normal, kind="stable")
    positions, files = positions[order], [files[i] for i in order]
    if len(files) < 2:
        raise _fail(folder, uid, "has a single slice; a 3D scan needs at least two.")
    steps = np.diff(positions @ normal)
    if np.any(np.abs(steps) < 1e-3):
        raise _fail(folder, uid, "two instances lie at the same position: the folder mixes repeated acquisitions.")
    median = float(np.median(steps))
    irregular = np.flatnonzero(np.abs(steps - median) > _POSITION_RTOL * median)
    if irregular.size:
        gaps = ", ".join(f"{steps[i]:.3g} mm after {files[i].name}" for i in irregular[:3])
        raise _fail(
            folder, uid, f"the slice positions are not evenly spaced (step {median:.3g} mm, but {gaps}): slices are "
            "missing or the series is truncated. Export the complete series.",
        )  # fmt: skip
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]
    lps[:3, 1] = col_dir * spacing[0]
    lps[:3, 2] = (positions[-1] - positions[0]) / (len(files) - 1)
    lps[:3, 3] = positions[0]
    first = headers[int(order[0])]
    identity = {tag: str(first.get(tag, "")) for tag in _SERIES_TAGS}
    return DicomSeries(tuple(files), (int(columns), int(rows), len(files)), _LPS_TO_RAS @ lps, identity)


def read_series(ref: str | Path, dtype: np.dtype | type = np.float32) -> tuple[DicomSeries, np.ndarray]:
    """Read one series' modality values as an array in source voxel order ``(columns, rows, slices)``.

    Raises:
        FileNotFoundError: See :func:`series_geometry`.
        ValueError: For the refusals of :func:`series_geometry`, or pixel data that cannot be decoded.
    """
    pydicom = _pydicom()
    series = series_geometry(ref)
    folder, uid = _split_ref(ref)
    data = np.empty(series.shape, dtype=dtype, order="F")
    for k, file in enumerate(series.files):
        try:
            instance = pydicom.dcmread(file)
            pixels = pydicom.pixels.apply_modality_lut(instance.pixel_array, instance)
        except (OSError, ValueError, AttributeError, EOFError) as err:
            raise _fail(
                folder, uid, f"cannot decode the pixel data of {file.name} ({err}): the file is truncated or "
                "corrupt. Export the series again.",
            ) from err  # fmt: skip
        if pixels.shape != series.shape[1::-1]:
            raise _fail(folder, uid, f"{file.name} decodes to {pixels.shape}, not {series.shape[1::-1]} (truncated).")
        data[:, :, k] = pixels.T
    return series, data
