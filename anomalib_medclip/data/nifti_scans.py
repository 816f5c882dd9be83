# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Unlabelled NIfTI scans and DICOM series as axial slices, for ``anomalib predict``.

``path`` is one ``.nii``/``.nii.gz`` file or a folder of them (not recursive); the folder may also hold DICOM
files (recognised by their ``DICM`` preamble, whatever their name), read as one scan per series
(``SeriesInstanceUID``) through :mod:`anomalib_medclip.data.dicom` (optional extra ``dicom``), in the same canonical
orientation as NIfTI, so that maps written over a series overlay it exactly. A series is named
``<folder>_s<SeriesNumber>`` (``<folder>_<SeriesInstanceUID>`` when its number is missing or shared). Slices are
served exactly as in :class:`~anomalib_medclip.data.brats.BraTS` (same reader, orientation and scaling), without
masks or labels, so a model trained on BraTS can be run on new scans and its slice maps stacked back per volume
(``volume_id``, ``slice_index``) and saved over the source scan with
:func:`~anomalib_medclip.data.nifti.to_source_orientation`.

Each file's name without ``.nii``/``.nii.gz`` (in any letter case: ``C-T2W.NII.GZ`` is read as ``C-T2W``) is its
``volume_id``, the name of its outputs. Two files with the same ``volume_id`` (``x-t2w.nii`` and ``x-t2w.nii.gz``;
also ``x-t2w.nii.gz`` and ``X-T2W.nii.gz``, which share output names on case-insensitive file systems) are an error
naming both files, never one output silently overwriting the other. Files that are not read are listed in one
warning, with the reason: not ``.nii``/``.nii.gz``, a mixed-case ``.Nii`` extension nibabel cannot open, or (with
``modality``) a name without a modality. Expected skips are not listed: hidden files, segmentations (``*seg*``) and,
with ``modality``, the other BraTS modalities. Sub-folders are not searched. With ``on_error="skip"`` a scan that
cannot be read (a truncated file, a DICOM series with missing slices, a non-image DICOM instance, ...) is skipped with
a warning naming it and the problem, instead of stopping the run; every scan is then decoded once up front.

Example:
    >>> from anomalib_medclip.data import NiftiScans
    >>> datamodule = NiftiScans(path="scans/", modality="t2f")  # doctest: +SKIP
    >>> # anomalib predict --model ... --data anomalib_medclip.data.NiftiScans --data.path scans/
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from anomalib.data import AnomalibDataModule
from anomalib.data.utils import LabelName, Split
from torch.utils.data import DataLoader

from anomalib_medclip.data.brats import MODALITY_ALIASES, Modality, OnError, canonical_modality, check_planes
from anomalib_medclip.data.dicom import (
    find_series,
    is_dicom_file,
    is_series_ref,
    series_geometry,
)
from anomalib_medclip.data.nifti import PLANE_AXES, read_geometry, read_volume
from anomalib_medclip.data.volume_slices import (
    Channels,
    NiftiSliceDataset,
    VolumeEvalLoadersMixin,
    check_channels,
    describe_inputs,
)

__all__ = ["NiftiScans", "make_nifti_scans_dataset"]

_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_READABLE_SUFFIX = re.compile(r"\.(nii|NII)(\.[gG][zZ])?$")  # nibabel cannot open a mixed-case ".Nii"
_ANY_MODALITY = re.compile(
    rf"[-_.]({'|'.join(['seg', *MODALITY_ALIASES, *MODALITY_ALIASES.values()])})\.nii(\.gz)?$", re.IGNORECASE
)


def _modality_pattern(modality: str) -> re.Pattern[str]:
    """Filename pattern ``<sep><name>.nii[.gz]`` for a modality under either BraTS naming."""
    canonical = canonical_modality(modality)
    names = [canonical, *(alias for alias, target in MODALITY_ALIASES.items() if target == canonical)]
    return re.compile(rf"[-_.]({'|'.join(names)})\.nii(\.gz)?$", re.IGNORECASE)


def _skip_reason(file: Path, pattern: re.Pattern[str] | None) -> str | None:
    """Why a file of the folder is not read, ``""`` for an expected skip, ``None`` when it is read."""
    name = file.name
    if name.startswith("."):
        return ""
    if not _SUFFIX.search(name):
        return "dicom" if is_dicom_file(file) else "not a .nii/.nii.gz file"
    if not _READABLE_SUFFIX.search(name):
        return "mixed-case extension that nibabel cannot open; rename it to .nii.gz"
    if pattern is None:
        return "" if "seg" in name.lower() else None
    if pattern.search(name):
        return None
    return "" if _ANY_MODALITY.search(name) else "name does not end in a modality (e.g. case-t2w.nii.gz)"


def _select_files(folder: Path, modality: str | None) -> list[Path]:
    """The scans of a folder to read; one warning lists the unexpected skips."""
    pattern = _modality_pattern(modality) if modality else None
    files, skipped, has_dicom = [], [], False
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        reason = _skip_reason(file, pattern)
        if reason is None:
            files.append(file)
        elif reason == "dicom":
            has_dicom = True
        elif reason:
            skipped.append(f"{file.name!r} ({reason})")
    if skipped:
        wanted = f" with modality {modality!r}" if modality else ""
        warnings.warn(
            f"NiftiScans skips {len(skipped)} file(s) in {folder} that are not scans{wanted}: {', '.join(skipped)}.",
            stacklevel=4,
        )
    return [str(file) for file in files] + (_series_refs(folder) if has_dicom else [])


def _series_refs(folder: Path) -> list[str]:
    """One series reference per ``SeriesInstanceUID`` of the DICOM files of ``folder``."""
    return [str(files[0]) for _, files in sorted(find_series(folder).items())]


def _series_names(refs: list[str]) -> dict[str, str]:
    """``<folder>_s<SeriesNumber>`` per series reference; ``<folder>_<SeriesInstanceUID>`` for a shared number."""
    identities = {ref: series_geometry(ref).identity for ref in refs}
    numbers = [identity["SeriesNumber"] for identity in identities.values()]
    names = {}
    for ref, identity in identities.items():
        folder, number = Path(ref).parent.name, identity["SeriesNumber"]
        unique = number and numbers.count(number) == 1
        names[ref] = f"{folder}_s{number}" if unique else f"{folder}_{identity['SeriesInstanceUID']}"
    return names


def _volume_ids(files: list[str], series_names: dict[str, str]) -> list[str]:
    """File names without ``.nii[.gz]`` (series names for DICOM); two scans with one id (any case) are an error."""
    ids = [series_names.get(file) or _SUFFIX.sub("", Path(file).name) for file in files]
    seen: dict[str, str] = {}
    for file, volume_id in zip(files, ids, strict=True):
        other = seen.setdefault(volume_id.casefold(), file)
        if other != file:
            msg = (
                f"NiftiScans files {other} and {file} have the same volume id {volume_id!r} (the file name without "
                ".nii/.nii.gz, letter case ignored), so their outputs would overwrite each other. Rename or move one."
            )
            raise ValueError(msg)
    return ids


def _readable(files: list[str], on_error: OnError) -> list[tuple[str, tuple[int, int, int]]]:
    """``(scan, canonical shape)`` of the scans that can be read; with ``skip`` each is decoded once to check it."""
    readable = []
    for file in files:
        try:
            shape, _ = read_geometry(file)
            if on_error == "skip":
                read_volume(file)  # decode once: a truncated scan is skipped now, not met while serving
        except (OSError, ValueError) as err:
            if on_error == "raise":
                raise
            warnings.warn(f"NiftiScans skips scan {file}: {err}", stacklevel=4)
            continue
        readable.append((file, shape))
    return readable


def make_nifti_scans_dataset(
    path: str | Path,
    modality: Modality | str | None = None,
    planes: list[str] | tuple[str, ...] = ("axial",),
    on_error: OnError = "raise",
) -> pd.DataFrame:
    """Slice table of unlabelled scans (``label_index`` unknown, no ``mask_path``, split ``test``).

    Args:
        path: A NIfTI file or a folder of NIfTI files and/or DICOM series.
        modality: Keep only files named ``*-<modality>.nii[.gz]`` or ``*_<modality>.nii[.gz]`` (either BraTS
            naming). Defaults to ``None`` (every file except ``*seg*``).
        planes: Slice planes to serve (tri-planar inference). Defaults to ``("axial",)``.
        on_error: ``"raise"`` (default) or ``"skip"`` an unreadable scan with a warning (see the module docstring).

    Returns:
        One row per slice of each plane with ``image_path``, ``mask_path`` (``""``), ``label_index``, ``volume_id``,
        ``volume_index``, ``slice_index``, ``plane`` and ``split``.

    Raises:
        FileNotFoundError: If ``path`` does not exist or holds no matching scan.
        ValueError: If two scans have the same volume id, or (``on_error="raise"``) a scan cannot be read.
    """
    path = Path(path)
    if not path.exists():
        msg = f"Scan path {path} does not exist; pass a .nii/.nii.gz file or a folder of them."
        raise FileNotFoundError(msg)
    reason = None
    if path.is_file():
        reason = _skip_reason(path, _modality_pattern(modality) if modality else None)
        files = [str(path)] if reason is None else []
        if reason == "dicom":
            reason = f"a single DICOM file; pass its folder ({path.parent}), which is read series by series"
    else:
        files = _select_files(path, modality)
    if not files:
        msg = f"No NIfTI scan in {path} matches modality {modality!r} (expected names like case-t2w.nii.gz)."
        if reason:
            msg = f"Scan {path} is not read: {reason}."
        if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
            msg += " Sub-folders are not searched: point `path` at the folder that holds the scans."
        raise FileNotFoundError(msg)
    rows, readable = [], _readable(files, on_error)
    if not readable:
        msg = f"No scan of {path} could be read (on_error='skip' skipped them all; see the warnings)."
        raise FileNotFoundError(msg)
    series_names = _series_names([file for file, _ in readable if is_series_ref(file)])
    ids = _volume_ids([file for file, _ in readable], series_names)
    for index, ((file, shape), volume_id) in enumerate(zip(readable, ids, strict=True)):
        rows += [
            (file, "", int(LabelName.UNKNOWN), volume_id, index, k, plane, Split.TEST.value)
            for plane in check_planes(planes)
            for k in range(shape[PLANE_AXES[plane]])
        ]
    columns = ["image_path", "mask_path", "label_index", "volume_id", "volume_index", "slice_index", "plane", "split"]
    samples = pd.DataFrame(rows, columns=columns)
    samples.attrs["task"] = "segmentation"
    return samples


class NiftiScans(VolumeEvalLoadersMixin, AnomalibDataModule):
    """Unlabelled scans for prediction; ``predict_dataloader`` (and ``test_dataloader``) serve every slice.

    Args:
        path: A NIfTI file or a folder of NIfTI files and/or DICOM series (one scan per ``SeriesInstanceUID``).
        modality: Filename modality filter (either BraTS naming). Defaults to ``None``.
        object_name: Object phrase for text prompts. Defaults to ``"brain MRI scan"``.
        eval_batch_size: Batch size. Defaults to ``32``.
        num_workers: DataLoader workers. Defaults to ``2``.
        cache_size: Decoded volumes kept per worker. Defaults to ``4``.
        planes: Slice planes to serve (see :class:`~anomalib_medclip.data.BraTS`). Defaults to ``None`` (axial).
        channels: ``repeat`` or ``adjacent`` (2.5D); ``sequences`` needs labelled BraTS case folders. Defaults to
            ``"repeat"``.
        on_error: ``"raise"`` (default) or ``"skip"`` unreadable scans with a warning.
    """

    def __init__(
        self,
        path: str | Path,
        modality: Modality | str | None = None,
        object_name: str = "brain MRI scan",
        eval_batch_size: int = 32,
        num_workers: int = 2,
        cache_size: int = 4,
        planes: list[str] | None = None,
        channels: Channels = "repeat",
        on_error: OnError = "raise",
    ) -> None:
        if channels == "sequences":
            msg = (
                "NiftiScans serves one file per volume, so channels='sequences' is not available; use 'repeat' or "
                "'adjacent' (or BraTS case folders, which hold every sequence of a case)."
            )
            raise ValueError(msg)
        check_channels(channels, None)
        super().__init__(train_batch_size=eval_batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.path = Path(path)
        self.modality = canonical_modality(modality) if modality else None
        self._object_name = object_name
        self.cache_size = cache_size
        self.planes = check_planes(planes or ("axial",))
        self.channels = channels
        self.on_error = on_error
        self.category = self.modality or "scans"

    @property
    def reference_channel(self) -> int:
        """The input channel that shows the slice itself (the centre one for ``adjacent``)."""
        return 1 if self.channels == "adjacent" else 0

    @property
    def object_name(self) -> str:
        """Object phrase for text prompts."""
        return self._object_name

    def describe(self) -> dict[str, Any]:
        """What defines the scans in a report: absolute path, modality filter, object phrase."""
        return {
            "path": str(self.path.resolve()),
            "modality": self.modality,
            "object_name": self.object_name,
            **describe_inputs(self.planes, self.channels),
        }

    def _setup(self, _stage: str | None = None) -> None:
        """Build the slice table of every scan as the test (= predict) set."""
        samples = make_nifti_scans_dataset(self.path, self.modality, self.planes, self.on_error)
        self.test_data = NiftiSliceDataset(samples, cache_size=self.cache_size, channels=self.channels)

    def _create_test_split(self) -> None:
        """Serve every scan as it is (there are no labels to split by)."""

    def val_dataloader(self) -> DataLoader:
        """Refuse: unlabelled scans have no validation split, which thresholds and normalisation are learnt from.

        anomalib's ``predict`` validates a model given without ``ckpt_path`` to learn them; here that must come from a
        checkpoint written by ``anomalib train`` on labelled data (for zero-shot models too: their ``train`` only
        validates).
        """
        msg = (
            f"NiftiScans ({self.path}) holds unlabelled scans: there is no validation split to learn the thresholds "
            "and the normalisation from. Pass --ckpt_path (Engine.predict(ckpt_path=...)) with the model.ckpt that "
            "`anomalib train` wrote on labelled data (zero-shot models too: their `train` only validates)."
        )
        raise ValueError(msg)
