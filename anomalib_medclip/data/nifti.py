# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""NIfTI volume reading in canonical (RAS+) orientation, slice display orientation and the way back.

Every 3D dataset of the package reads scans through :func:`read_volume`, so that all of them agree on one voxel order:
the closest canonical orientation of the file (``nibabel.as_closest_canonical`` semantics, RAS+: the first array axis
grows towards the patient's Right, the second towards Anterior, the third towards Superior). Axial slices are
``data[:, :, z]``. A 2D model sees the slice through :func:`slice_to_image`, a radiological view (anterior at the
top, the patient's right on the image's left); :func:`image_to_slice` is its exact inverse, so that anomaly maps
can be put back into the volume. :func:`to_source_orientation` turns a canonical array back into the file's own
voxel order, so that it can be saved with ``Volume.source_affine`` and overlay the original scan voxel for voxel;
``Volume.space`` carries the file's qform/sform (with their codes) and units so that written results keep them.
:func:`brain_mask` is the package's one definition of the voxels that count as brain; :func:`read_label_map` and
:func:`lesion_mask` are its one definition of a segmentation's lesion (integer labels, lesion = label > 0), used for
the slice labels, the 2D masks and the 3D ground truth alike. :func:`affines_match` is its one test that a
segmentation lies on its image's grid (MONAI's tolerance).

Only permutations and flips of axes are involved (no resampling), so every round trip is exact.

Example:
    >>> import numpy as np
    >>> image = slice_to_image(np.arange(6.0).reshape(3, 2))
    >>> image.shape
    (2, 3)
    >>> np.array_equal(image_to_slice(image), np.arange(6.0).reshape(3, 2))
    True

See Also:
    ``anomalib_medclip.data.brats`` for the slice datasets built on it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from anomalib_medclip.data.dicom import is_series_ref, read_series, series_geometry

__all__ = [
    "AFFINE_ATOL",
    "PLANES",
    "PLANE_AXES",
    "NiftiSpace",
    "Plane",
    "Volume",
    "affines_match",
    "brain_mask",
    "image_to_slice",
    "lesion_mask",
    "plane_slice",
    "read_geometry",
    "read_label_map",
    "read_volume",
    "slice_to_image",
    "to_canonical_orientation",
    "to_source_orientation",
]

_RAS = axcodes2ornt(("R", "A", "S"))
Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")
PLANE_AXES: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}
"""The canonical (RAS+) array axis each slice plane cuts: axial ``data[:, :, k]``, coronal ``data[:, k, :]``,
sagittal ``data[k, :, :]``."""
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError)
AFFINE_ATOL = 1e-3
"""Absolute tolerance (mm) of :func:`affines_match`: MONAI's ``monai.data.utils.AFFINE_TOL``, used the same way
(``allclose(src_affine, dst_affine, atol=AFFINE_TOL)`` decides whether two grids are the same)."""


def brain_mask(intensities: np.ndarray) -> np.ndarray:
    """Voxels inside the brain: source intensity > 0.

    BraTS scans are skull-stripped with the background set to exactly 0; a brain voxel whose intensity happens to
    be exactly 0 counts as background, the same way everywhere. The 3D evaluation (``brain_only``) and the slice
    datasets (the served ``brain_mask`` field that the 2D ``volume_metrics()`` read) use this one rule, always on
    the source intensities, never on a scaled or normalised image.

    Args:
        intensities: Source voxel intensities, any shape (a volume or one slice).

    Returns:
        A boolean array of the same shape.
    """
    return np.asarray(intensities) > 0


def lesion_mask(labels: np.ndarray) -> np.ndarray:
    """Voxels of the whole tumour: label > 0, on an integer label map read by :func:`read_label_map`.

    The package's one lesion rule: the slice labels of the BraTS table, the served 2D ``gt_mask`` and the 3D
    ground truth all come from it, so that a slice is anomalous exactly when its mask has a lesion voxel.

    Args:
        labels: Integer labels, any shape.

    Returns:
        A boolean array of the same shape.
    """
    return np.asarray(labels) > 0


def affines_match(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two ``(4, 4)`` voxel-to-world affines describe the same grid (``np.allclose``, ``atol=AFFINE_ATOL``).

    This is MONAI's test (``allclose(..., atol=AFFINE_TOL)`` with ``AFFINE_TOL = 1e-3`` in ``SpatialResample``);
    header round-off (float32 qform/sform) stays far below it, a misregistration of a voxel or a flip does not.
    """
    return bool(np.allclose(np.asarray(first, np.float64), np.asarray(second, np.float64), atol=AFFINE_ATOL))


@dataclass(frozen=True)
class NiftiSpace:
    """What a NIfTI header says about its world space, beyond the affine ``nibabel`` picks from it.

    Attributes:
        qform: The header's qform matrix, or ``None`` when its code is 0.
        qform_code: NIfTI qform code (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI, 5 template).
        sform: The header's sform matrix, or ``None`` when its code is 0.
        sform_code: NIfTI sform code (same meanings).
        units: Spatial and temporal units (e.g. ``("mm", "sec")``; ``"unknown"`` when not set).
    """

    qform: np.ndarray | None = None
    qform_code: int = 0
    sform: np.ndarray | None = None
    sform_code: int = 0
    units: tuple[str, str] = ("unknown", "unknown")

    @classmethod
    def from_header(cls, header: nib.Nifti1Header) -> NiftiSpace:
        """Read the forms, their codes and the units of a NIfTI-1/2 header."""
        qform, qform_code = header.get_qform(coded=True)
        sform, sform_code = header.get_sform(coded=True)
        spatial, temporal = header.get_xyzt_units()
        return cls(qform, int(qform_code), sform, int(sform_code), (spatial, temporal))


@dataclass(frozen=True)
class Volume:
    """A 3D scan in canonical RAS+ orientation, with what is needed to map results back to the file.

    Attributes:
        data: Voxel array of shape ``(X, Y, Z)`` in canonical orientation (often a Fortran-ordered view).
        affine: Canonical voxel-to-world ``(4, 4)`` affine (it maps ``data`` indices to scanner mm).
        source_shape: Shape of the array as stored in the file (without a trailing singleton 4th dimension).
        source_affine: Affine of the file, for saving results with :func:`to_source_orientation`.
        spacing: Canonical voxel sizes in mm, ``(sx, sy, sz)``.
        path: The file that was read.
        space: The file's qform/sform codes and units (see :class:`NiftiSpace`), for writing results alike.
        series: For a DICOM series (see ``anomalib_medclip.data.dicom``), its identity (``SeriesInstanceUID``,
            ``StudyInstanceUID``, ``Modality``, ...); ``None`` for a NIfTI file.
    """

    data: np.ndarray
    affine: np.ndarray
    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    spacing: tuple[float, float, float]
    path: Path
    space: NiftiSpace = NiftiSpace()
    series: dict[str, str] | None = None


def _load_image(path: Path) -> nib.Nifti1Image:
    """Open a NIfTI header and check the array is 3D (a trailing singleton 4th dimension is dropped)."""
    if not path.is_file():
        msg = f"NIfTI file {path} does not exist. Check the dataset root and the file name."
        raise FileNotFoundError(msg)
    try:
        image = nib.load(path)
    except _READ_ERRORS as err:
        msg = f"Cannot read the NIfTI header of {path}: {err}. The file is truncated or not NIfTI; re-download it."
        raise ValueError(msg) from err
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        image = image.slicer[:, :, :, 0]
    elif len(shape) != 3:
        msg = f"NIfTI file {path} has shape {shape}; expected a 3D volume (X, Y, Z), optionally (X, Y, Z, 1)."
        raise ValueError(msg)
    return image


def _canonical_transform(source_affine: np.ndarray) -> np.ndarray:
    """Orientation transform (nibabel ``ornt`` array) from the file's voxel axes to RAS+."""
    return ornt_transform(io_orientation(source_affine), _RAS)


def to_canonical_orientation(source_xyz: np.ndarray, source_affine: np.ndarray) -> np.ndarray:
    """Reorder an array stored in a file's voxel order into canonical RAS+ order (as :func:`read_volume` does).

    Args:
        source_xyz: Array whose first three axes follow the file's voxel axes (extra trailing axes are kept).
        source_affine: The file's ``(4, 4)`` affine.

    Returns:
        The array with its first three axes permuted and flipped to RAS+.
    """
    return apply_orientation(source_xyz, _canonical_transform(np.asarray(source_affine)))


def to_source_orientation(canonical_xyz: np.ndarray, source_affine: np.ndarray) -> np.ndarray:
    """Reorder a canonical (RAS+) array back into a file's voxel order, the inverse of :func:`to_canonical_orientation`.

    The result can be saved with ``nib.Nifti1Image(result, source_affine)`` and overlays the source scan exactly.

    Args:
        canonical_xyz: Array whose first three axes are in RAS+ order (e.g. an anomaly map stacked from slices).
        source_affine: The ``(4, 4)`` affine of the file the canonical array was read from.

    Returns:
        The array with its first three axes in the file's voxel order.
    """
    to_source = ornt_transform(_RAS, io_orientation(np.asarray(source_affine)))
    return apply_orientation(canonical_xyz, to_source)


def _read_array(image: nib.Nifti1Image, path: Path, dtype: np.dtype | type) -> np.ndarray:
    """Decode the voxel array with header scaling, turning decompression errors into a ``ValueError``.

    An integer ``dtype`` (label maps) never truncates: stored values that are not whole numbers are refused.
    """
    try:
        if np.issubdtype(dtype, np.floating):
            return image.get_fdata(dtype=dtype)
        stored = np.asanyarray(image.dataobj)
    except _READ_ERRORS as err:
        msg = f"Cannot decode the voxel data of {path}: {err}. The file is truncated or corrupt; re-download it."
        raise ValueError(msg) from err
    if np.issubdtype(stored.dtype, np.floating):
        _check_whole_numbers(stored, path)
    return stored.astype(dtype, copy=False)


def _check_whole_numbers(values: np.ndarray, path: Path) -> None:
    """Refuse NaN, infinite or fractional values where integer labels are expected."""
    finite = np.isfinite(values)
    if not finite.all():
        msg = f"Label map {path} holds {int(values.size - finite.sum())} NaN or infinite voxels; expected labels."
        raise ValueError(msg)
    fractional = values != np.round(values)
    if fractional.any():
        examples = ", ".join(f"{v:g}" for v in np.unique(values[fractional])[:5])
        msg = (
            f"Label map {path} holds non-integer values ({int(fractional.sum())} voxels, e.g. {examples}): it "
            "looks interpolated. A segmentation must hold integer labels; resample it with nearest-neighbour "
            "interpolation (or round it) and save it again."
        )
        raise ValueError(msg)


def read_volume(path: str | Path, *, dtype: np.dtype | type = np.float32, check_finite: bool = True) -> Volume:
    """Read a 3D NIfTI scan (or a DICOM series) into canonical RAS+ orientation.

    Args:
        path: ``.nii`` or ``.nii.gz`` file, or a DICOM file, which stands for its whole series
            (``anomalib_medclip.data.dicom``).
        dtype: Output dtype. Floating dtypes apply the header's scaling (``get_fdata``); integer dtypes
            (e.g. ``np.int32`` for label maps) take the scaled stored values, which must be whole numbers (an
            interpolated label map is refused, never truncated). Defaults to ``np.float32``.
        check_finite: Refuse NaN or infinite intensities. Defaults to ``True``; ``False`` only decodes (used
            where the check is left to the moment a slice is served).

    Returns:
        The :class:`Volume`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is truncated or corrupt, is not 3D, holds NaN or infinite values, or (integer
            ``dtype``) holds values that are not whole numbers.
    """
    path = Path(path)
    if is_series_ref(path):
        series, data = read_series(path, dtype)
        space = NiftiSpace(series.affine, 1, series.affine, 1, ("mm", "sec"))  # scanner coordinates, like dcm2niix
        source_affine, identity = series.affine, series.identity
    else:
        image = _load_image(path)
        data = _read_array(image, path, dtype)
        source_affine, identity = np.asarray(image.affine, np.float64), None
        space = NiftiSpace.from_header(image.header)
    if check_finite and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        msg = f"Scan {path} holds {bad} NaN or infinite voxels; expected finite intensities. Fix the scan."
        raise ValueError(msg)
    transform = _canonical_transform(source_affine)
    canonical = apply_orientation(data, transform)  # a view: axial slices of Fortran-ordered data stay contiguous
    affine = source_affine @ inv_ornt_aff(transform, data.shape)
    spacing = tuple(float(s) for s in nib.affines.voxel_sizes(affine))
    return Volume(
        data=canonical,
        affine=affine,
        source_shape=tuple(int(s) for s in data.shape),
        source_affine=source_affine,
        spacing=spacing,
        path=path,
        space=space,
        series=identity,
    )


def read_label_map(path: str | Path) -> Volume:
    """Read a segmentation as ``int32`` labels in canonical orientation (see :func:`lesion_mask` for the lesion).

    Args:
        path: ``.nii`` or ``.nii.gz`` label map.

    Returns:
        The :class:`Volume` with ``int32`` data.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is truncated or corrupt, is not 3D, or holds values that are not whole numbers
            (an interpolated label map: rounding it silently would move the lesion border).
    """
    return read_volume(path, dtype=np.int32)


def read_geometry(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Read the canonical shape and affine of a NIfTI file (or DICOM series) from its header only (no voxel decoding).

    Args:
        path: ``.nii`` or ``.nii.gz`` file, or a DICOM file (its series).

    Returns:
        ``(shape, affine)``: the shape and ``(4, 4)`` affine :func:`read_volume` would return.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the header is unreadable or the image is not 3D.
    """
    path = Path(path)
    if is_series_ref(path):
        series = series_geometry(path)
        source_shape, source_affine = series.shape, series.affine
    else:
        image = _load_image(path)
        source_shape, source_affine = image.shape, np.asarray(image.affine, dtype=np.float64)
    transform = _canonical_transform(source_affine)
    shape = tuple(int(source_shape[int(axis)]) for axis in np.argsort(transform[:, 0]))
    return shape, source_affine @ inv_ornt_aff(transform, source_shape)


def slice_to_image(slice_xy: np.ndarray) -> np.ndarray:
    """Turn a canonical axial slice ``data[:, :, z]`` (X, Y) into the (H, W) image a 2D model sees.

    Radiological display: anterior at the top (row 0 is the most anterior voxel row) and the patient's right on
    the left of the image (column 0 is the most rightward voxel). ``H = Y`` and ``W = X``; trailing axes are kept.

    Args:
        slice_xy: Array of shape ``(X, Y, ...)`` in RAS+ order.

    Returns:
        Contiguous array of shape ``(Y, X, ...)``.
    """
    return np.ascontiguousarray(np.flip(np.swapaxes(slice_xy, 0, 1), axis=(0, 1)))


def plane_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """Slice ``index`` of a canonical volume in ``plane``, as the (H, W) image a 2D model sees.

    :func:`slice_to_image` of the plane's cut: axial (H, W) = (Y, X), anterior at the top, the patient's right on
    the left; coronal (Z, X), superior at the top, right on the left; sagittal (Z, Y), superior at the top,
    anterior on the left. Trailing axes of ``volume`` (e.g. channels) are kept.
    """
    if plane not in PLANE_AXES:
        msg = f"Unknown slice plane {plane!r}; expected one of {list(PLANES)}."
        raise ValueError(msg)
    return slice_to_image(np.take(volume, index, axis=PLANE_AXES[plane]))


def image_to_slice(image_hw: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`slice_to_image`: map an (H, W) image (e.g. an anomaly map) back to slice order (X, Y).

    Args:
        image_hw: Array of shape ``(H, W, ...)`` in display orientation.

    Returns:
        Contiguous array of shape ``(W, H, ...)`` = ``(X, Y, ...)`` that can be written to ``data[:, :, z]``.
    """
    return np.ascontiguousarray(np.swapaxes(np.flip(image_hw, axis=(0, 1)), 0, 1))
