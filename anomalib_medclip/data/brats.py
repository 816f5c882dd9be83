# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""BraTS brain-tumour volumes as axial slices (BraTS 2023 MET/GLI-style and BraTS 2021 layouts, auto-detected).

Layouts (case folders may sit directly in ``root`` or one level below):

- BraTS 2023 style: ``BraTS-MET-XXXXX-YYY/BraTS-MET-XXXXX-YYY-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (``XXXXX`` subject,
  ``YYY`` time point; other 2023 cohorts such as ``BraTS-GLI-`` use the same naming);
- BraTS 2021: ``BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,t1,t1ce,t2,seg}.nii.gz``.

The ``modality`` option takes either naming (``t2f`` == ``flair``, ``t1n`` == ``t1``, ``t1c`` == ``t1ce``,
``t2w`` == ``t2``). The target is the whole tumour, ``seg > 0``, in both conventions. Geometry comes from each
header (canonical RAS+ orientation, any grid size). Subjects, not slices, are split into train/val/test with a
seeded permutation, so that no subject (all time points of a BraTS-MET subject included) appears in two splits.
The train split holds normal *and* tumour slices with their labels and masks: the package's trainable models learn
from them (they are ``ONE_CLASS`` models in anomalib's vocabulary, the only type for which ``fit`` runs).

What is checked when the table is built (nothing under ``root`` is ever written):

- Case folders: a root may mix both namings; every case is read with its own file names and label convention
  (one warning says the root is mixed). Folders that match neither naming (``BraTS-MET-3-000``,
  ``BraTS-MET-00003-000 copy``, ``notes/``) are listed in one warning and not read; sub-folders of case folders
  are not looked at. The case folder name is the volume's identity (``volume_id``, the 3D outputs' file names):
  the same name found twice (``batch1/BraTS-MET-00003-000`` and ``batch2/BraTS-MET-00003-000``) is an error naming
  both paths, whatever ``on_error`` says.
- Segmentations (per case; ``on_error="skip"`` skips the case with a warning instead of raising): the same
  canonical shape as the image, the same affine (:func:`~anomalib_medclip.data.nifti.affines_match`, MONAI's
  tolerance ``atol=1e-3``; both affines are printed), whole-number labels (an interpolated map with 0.4/0.6 is
  refused, not rounded), and labels inside the convention of the case's naming: ``{0, 1, 2, 3}`` for BraTS 2023
  style, ``{0, 1, 2, 4}`` for BraTS 2021. Label 3 in a BraTS 2021-style case (tumour in every release that uses
  it) is accepted as tumour with one warning naming the cases; anything else (4 in a BraTS 2023 case, e.g. the
  resection cavity of post-treatment releases, 5, 255, -1) is refused with the values found, rather than guessing
  whether it is a lesion. Slice labels, served 2D masks and the 3D ground truth all come from
  :func:`~anomalib_medclip.data.nifti.lesion_mask` on :func:`~anomalib_medclip.data.nifti.read_label_map`.
- Images: every image volume is decoded once when the table is built. An image that is all zero is kept but named
  in one warning (with its lesion voxel count): its slices are blank and the 3D evaluation counts no brain voxel.
  With ``on_error="skip"`` (or a ``brain`` slice selection) the image is fully validated then (truncated or corrupt
  data, NaN/inf), so a case that cannot be decoded is skipped before the run and the 3D evaluation's slice counts,
  tables and ``summary.json`` cover exactly the cases served; with ``on_error="raise"`` a truncated image raises
  then, and NaN/inf intensities raise when the slice is served. Decoding costs about 0.1 s per 240x240x155 case.
- ``z_range``: ``0 <= first < stop``; a range past the last slice of every volume is an error naming the volumes'
  depths; cases it misses entirely or in part are named in one warning.

Example:
    >>> from anomalib_medclip.data import BraTS
    >>> datamodule = BraTS(root="datasets/BraTS-MET", modality="t2f")  # doctest: +SKIP
    >>> datamodule.setup()  # doctest: +SKIP

See Also:
    :mod:`anomalib_medclip.data.volume_slices` for how slices are served.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from anomalib.data import AnomalibDataModule
from anomalib.data.utils import Split, TestSplitMode, ValSplitMode
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Transform

from anomalib_medclip.data.nifti import (
    PLANE_AXES,
    PLANES,
    Volume,
    affines_match,
    lesion_mask,
    read_geometry,
    read_label_map,
    read_volume,
)
from anomalib_medclip.data.samplers import grouped_train_loader
from anomalib_medclip.data.volume_slices import (
    Channels,
    NiftiSliceDataset,
    VolumeEvalLoadersMixin,
    check_channels,
    describe_inputs,
)

__all__ = ["BraTS", "BraTSDataset", "make_brats_dataset", "split_subjects"]

Modality = Literal["t1n", "t1c", "t2w", "t2f", "t1", "t1ce", "t2", "flair"]
SliceSelection = Literal["all", "brain", "z_range", "lesion"]
OnError = Literal["raise", "skip"]

MODALITY_ALIASES = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
_MODALITIES_2021 = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}


@dataclass(frozen=True)
class _Convention:
    """How one BraTS release names its case folders and files."""

    name: str
    case_pattern: re.Pattern[str]
    separator: str
    modalities: dict[str, str]  # canonical (2023) modality name -> name in the file
    labels: frozenset[int]  # the labels of the release (0 = background)
    tolerated: frozenset[int]  # labels of other releases that are tumour too: accepted with one warning
    example: str

    def subject(self, case_id: str) -> str:
        """Subject of a case: the BraTS 2023 time point suffix is dropped."""
        return case_id.rsplit("-", 1)[0] if self.separator == "-" else case_id


_CONVENTIONS = (
    _Convention(
        "BraTS 2023",
        re.compile(r"^BraTS-[A-Z]+-\d{5}-\d{3}$"),
        "-",
        {m: m for m in _MODALITIES_2021},
        frozenset({0, 1, 2, 3}),
        frozenset(),
        "BraTS-MET-00003-000",
    ),
    _Convention(
        "BraTS 2021",
        re.compile(r"^BraTS20\d\d_\d{5}$"),
        "_",
        _MODALITIES_2021,
        frozenset({0, 1, 2, 4}),
        frozenset({3}),
        "BraTS2021_00003",
    ),
)


def canonical_modality(modality: str) -> str:
    """Map a modality name of either convention to the BraTS 2023 name (``flair`` -> ``t2f``)."""
    name = MODALITY_ALIASES.get(modality.lower(), modality.lower())
    if name not in _MODALITIES_2021:
        valid = sorted([*_MODALITIES_2021, *MODALITY_ALIASES])
        msg = f"Unknown BraTS modality {modality!r}; expected one of {valid}."
        raise ValueError(msg)
    return name


def _convention_of(name: str) -> _Convention | None:
    """The naming a case folder name follows, or ``None``."""
    return next((c for c in _CONVENTIONS if c.case_pattern.match(name)), None)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _scan_root(root: Path) -> tuple[list[tuple[_Convention, Path]], list[Path]]:
    """Case folders directly in ``root`` or one level down, and the folders skipped as not matching any naming.

    A folder one level down is listed as skipped only inside a root-level folder that holds case folders (a batch
    folder); a root-level folder is listed when neither it nor any of its sub-folders is a case folder. Hidden
    folders are never listed.
    """
    cases, skipped = [], []
    for top in _subfolders(root):
        inner = [(q, _convention_of(q.name)) for q in _subfolders(top)]
        convention = _convention_of(top.name)
        if convention is not None:
            cases.append((convention, top))
        if convention is None:  # a batch folder (or other): its sub-folders may be cases
            cases += [(c, q) for q, c in inner if c is not None]
            holds_cases = any(c is not None for _, c in inner)
            skipped += [q for q, c in inner if c is None] if holds_cases else [top]
    skipped = [p for p in skipped if not p.name.startswith(".")]
    return sorted(cases, key=lambda case: case[1]), skipped


def _check_unique(cases: list[tuple[_Convention, Path]]) -> None:
    """Refuse a case folder name found more than once (it is the volume's identity)."""
    paths: dict[str, list[Path]] = {}
    for _, case in cases:
        paths.setdefault(case.name, []).append(case)
    duplicates = {name: found for name, found in paths.items() if len(found) > 1}
    if duplicates:
        listing = "; ".join(f"{name}: {' and '.join(str(p) for p in found)}" for name, found in duplicates.items())
        msg = (
            f"BraTS case folder names must be unique (the name is the volume's identity in every table and output "
            f"file), but {len(duplicates)} appear more than once: {listing}. If these are different scans, rename "
            "one (e.g. a new time point -001); if they are copies, remove one. Or point `root` at one batch folder."
        )
        raise ValueError(msg)


def _find_cases(root: Path) -> list[tuple[_Convention, Path]]:
    """Case folders under ``root`` (or one level below), each with the convention it follows.

    Warns once about folders that match no naming and once about a root that mixes both namings (all are read).
    """
    if not root.is_dir():
        msg = f"BraTS root {root} does not exist or is not a folder. Point `root` at the folder of case folders."
        raise FileNotFoundError(msg)
    cases, skipped = _scan_root(root)
    if not cases:
        msg = (
            f"No BraTS case folders in {root} (looked for 'BraTS-MET-XXXXX-YYY/' and 'BraTS2021_XXXXX/' folders, "
            "directly or one level down)."
        )
        raise FileNotFoundError(msg)
    _check_unique(cases)
    if skipped:
        names = ", ".join(repr(str(p.relative_to(root))) for p in skipped)
        examples = " or ".join(f"'{c.example}'" for c in _CONVENTIONS)
        warnings.warn(
            f"Skipping {len(skipped)} folder(s) under {root} that are not BraTS case folders: {names}. A case folder "
            f"is named like {examples} exactly (5-digit ids, nothing appended); rename a folder to have it read.",
            stacklevel=4,
        )
    counts = {c.name: sum(convention is c for convention, _ in cases) for c in _CONVENTIONS}
    if all(counts.values()):
        found = " and ".join(f"{n} {name}" for name, n in counts.items())
        warnings.warn(
            f"{root} mixes BraTS namings ({found} case folders); all are read, each with its own file names and "
            "label convention (whole tumour = label > 0 in both).",
            stacklevel=4,
        )
    return cases


def _case_file(case: Path, convention: _Convention, key: str) -> Path:
    """``<case>/<case><sep><key>.nii.gz`` (or ``.nii``)."""
    stem = f"{case.name}{convention.separator}{key}"
    plain = case / f"{stem}.nii"
    return plain if plain.is_file() else case / f"{stem}.nii.gz"


def _check_grid(image_path: Path, seg_path: Path, seg: Volume) -> None:
    """Refuse a segmentation that is not on its image's grid (canonical shape and affine)."""
    image_shape, image_affine = read_geometry(image_path)
    image_affine, seg_affine, seg_shape = np.asarray(image_affine, np.float64), seg.affine, seg.data.shape
    if seg_shape != image_shape:
        msg = f"Segmentation {seg_path} has canonical shape {seg_shape} but {image_path} has {image_shape}."
        raise ValueError(msg)
    if not affines_match(seg_affine, image_affine):
        with np.printoptions(precision=4, suppress=True):
            msg = (
                f"Segmentation {seg_path} is not on the grid of its image {image_path}: the affines differ by up to "
                f"{np.abs(seg_affine - image_affine).max():.4g} mm (tolerance 1e-3), so its lesion would be placed "
                f"on the wrong voxels. Affines after reorientation to RAS+:\nimage:\n{image_affine}\n"
                f"segmentation:\n{seg_affine}\nGive the segmentation its image's header (qform/sform), or "
                "resample it onto the image with nearest-neighbour interpolation."
            )
        raise ValueError(msg)


def _check_labels(seg_path: Path, labels: np.ndarray, convention: _Convention) -> list[int]:
    """Refuse labels outside the convention of the case's naming; return the tolerated other-release labels found.

    The usual case costs two reductions (minimum and maximum); the labels are listed only when one is refused.
    """
    accepted = convention.labels | convention.tolerated
    low, high = int(labels.min()), int(labels.max())
    if low < min(accepted) or high > max(accepted):  # both conventions are contiguous ranges
        values = np.unique(labels).tolist()
        unexpected = sorted(set(values) - accepted)
        if unexpected:
            note = " (4 is the resection cavity of post-treatment releases, not tumour)" if 4 in unexpected else ""
            msg = (
                f"Segmentation {seg_path} holds labels {unexpected} outside the {convention.name} convention "
                f"{sorted(convention.labels)}{note}; labels found: {values}. Whether they are tumour is unknown, so "
                "the case is refused. Remap them to the convention (tumour labels > 0, background 0) or remove the "
                "case."
            )
            raise ValueError(msg)
    return [v for v in sorted(convention.tolerated) if low <= v <= high and bool((labels == v).any())]


@dataclass
class _CaseScan:
    """What building the table learns about one case: its per-slice columns per plane and its image's emptiness."""

    columns: dict[str, dict[str, np.ndarray]]
    image_empty: bool
    lesion_voxels: int
    tolerated_labels: list[int]


def _case_slices(
    image_path: Path,
    seg_path: Path,
    convention: _Convention,
    need_brain: bool,
    validate_image: bool,
    planes: tuple[str, ...] = ("axial",),
) -> _CaseScan:
    """Per-slice tumour (and optionally non-empty-image) flags of one case, with its label map and geometry checked.

    The image is decoded too: to find an all-zero image, and with ``validate_image`` fully checked (truncated or
    corrupt data, NaN/inf), so that a bad case is known before any slice is served.
    """
    if not image_path.is_file():
        read_geometry(image_path)  # the error for a missing image, before the segmentation is looked at
    if not seg_path.is_file():
        msg = f"Segmentation {seg_path} is missing; BraTS cases need one (NiftiScans serves unlabelled scans)."
        raise FileNotFoundError(msg)
    seg = read_label_map(seg_path)
    _check_grid(image_path, seg_path, seg)
    tolerated = _check_labels(seg_path, seg.data, convention)
    lesion = lesion_mask(seg.data)
    image = read_volume(image_path, check_finite=validate_image or need_brain).data
    columns = {}
    for plane in planes:
        others = tuple(axis for axis in range(3) if axis != PLANE_AXES[plane])
        columns[plane] = {"label_index": lesion.any(axis=others).astype(int)}
        if need_brain:
            columns[plane]["brain"] = (image != 0).any(axis=others)
    return _CaseScan(columns, not image.any(), int(lesion.sum()), tolerated)


def split_subjects(subjects: list[str], test_ratio: float, val_ratio: float, seed: int) -> dict[str, str]:
    """Assign each subject to ``train``/``val``/``test`` with a seeded permutation.

    Args:
        subjects: Unique subject ids.
        test_ratio: Fraction of subjects for testing.
        val_ratio: Fraction of subjects for validation; train receives the rest.
        seed: Seed of the permutation.

    Returns:
        Mapping subject -> split name. A non-zero ratio gets at least one subject when there are three or more.
    """
    if test_ratio < 0 or val_ratio < 0 or test_ratio + val_ratio > 1:
        msg = f"test_ratio={test_ratio}, val_ratio={val_ratio}; expected non-negative fractions summing to <= 1."
        raise ValueError(msg)
    order = np.random.default_rng(seed).permutation(sorted(subjects))
    minimum = 1 if len(order) >= 3 else 0
    n_test = max(round(test_ratio * len(order)), minimum if test_ratio > 0 else 0)
    n_val = max(round(val_ratio * len(order)), minimum if val_ratio > 0 else 0)
    names = [Split.TEST.value] * n_test + [Split.VAL.value] * n_val
    names += [Split.TRAIN.value] * (len(order) - len(names))
    return dict(zip(order.tolist(), names, strict=True))


def select_slices(samples: pd.DataFrame, mode: SliceSelection, z_range: tuple[int, int] | None) -> pd.DataFrame:
    """Keep the slices of ``mode`` (``all``, ``brain`` non-empty, ``z_range`` [lo, hi), ``lesion`` tumour-bearing)."""
    keep = pd.Series(True, index=samples.index)
    if mode == "z_range" and z_range is None:
        msg = "slices='z_range' needs z_range=(first, stop) in canonical axial indices."
        raise ValueError(msg)
    if z_range is not None:  # axial indices: the other planes' slices are kept
        axial = samples.plane == "axial" if "plane" in samples.columns else keep
        keep &= samples.slice_index.between(z_range[0], z_range[1] - 1) | ~axial
    if mode == "brain":
        keep &= samples.brain.astype(bool)
    elif mode == "lesion":
        keep &= samples.label_index == 1
    elif mode not in {"all", "z_range"}:
        msg = f"Unknown slice selection {mode!r}; expected 'all', 'brain', 'z_range' or 'lesion'."
        raise ValueError(msg)
    return samples[keep]


def _warn_empty_images(empty: list[tuple[str, int]], modality: str) -> None:
    """One warning naming every case whose image volume is all zero."""
    if not empty:
        return
    listing = ", ".join(f"{name} ({voxels} lesion voxels in its segmentation)" for name, voxels in empty)
    warnings.warn(
        f"{len(empty)} BraTS case(s) have an all-zero {modality} image: {listing}. Their slices are served blank and "
        "the 3D evaluation counts no brain voxel in them (an empty metrics row). The image file is probably "
        "broken; re-export or re-download it, or remove the case.",
        stacklevel=4,
    )


def _warn_tolerated_labels(cases: list[str]) -> None:
    """One warning naming the BraTS 2021-style cases that hold label 3."""
    if cases:
        warnings.warn(
            f"{len(cases)} BraTS 2021-style case(s) hold label 3, which BraTS 2018-2021 do not use (their enhancing "
            f"tumour is 4; 3 is the non-enhancing tumour of BraTS 2012-2016 and the enhancing tumour of BraTS "
            f"2023): {', '.join(cases)}. It is counted as tumour, like every label > 0.",
            stacklevel=4,
        )


def _check_sequences(image_path: Path, paths: list[Path]) -> None:
    """Refuse an extra sequence that is missing or not on the reference sequence's grid (header only)."""
    shape, affine = read_geometry(image_path)
    for path in paths:
        other_shape, other_affine = read_geometry(path)
        if other_shape != shape or not affines_match(other_affine, affine):
            msg = (
                f"Sequence {path} is not on the grid of {image_path} (canonical shape {other_shape} vs {shape}, or "
                "the affines differ by more than 1e-3 mm): channels='sequences' needs co-registered sequences. "
                "Resample it onto the reference sequence, or choose other sequences."
            )
            raise ValueError(msg)


def _case_table(
    root: Path,
    modality: str,
    need_brain: bool,
    on_error: OnError,
    planes: tuple[str, ...] = ("axial",),
    sequences: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One row per slice (of each plane) of every readable case (no split yet)."""
    canonical = canonical_modality(modality)
    tables, empty, tolerated = [], [], []
    for volume_index, (convention, case) in enumerate(_find_cases(root)):
        image_path = _case_file(case, convention, convention.modalities[canonical])
        seg_path = _case_file(case, convention, "seg")
        extra = [_case_file(case, convention, convention.modalities[canonical_modality(m)]) for m in sequences[1:]]
        try:
            scan = _case_slices(
                image_path, seg_path, convention, need_brain, validate_image=on_error == "skip", planes=planes
            )
            _check_sequences(image_path, extra)
        except (OSError, ValueError) as err:
            if on_error == "raise":
                raise
            warnings.warn(f"Skipping BraTS case {case.name}: {err}", stacklevel=3)
            continue
        if scan.image_empty:
            empty.append((case.name, scan.lesion_voxels))
        if scan.tolerated_labels:
            tolerated.append(case.name)
        for plane, columns in scan.columns.items():
            table = pd.DataFrame(columns)
            table["slice_index"] = np.arange(len(table))
            table["plane"] = plane
            table["image_path"], table["mask_path"] = str(image_path), str(seg_path)
            table["volume_id"], table["volume_index"] = case.name, volume_index
            table["subject"] = convention.subject(case.name)
            if sequences:
                table["channel_paths"] = [tuple(str(p) for p in (image_path, *extra))] * len(table)
            tables.append(table)
    if not tables:
        msg = f"No readable BraTS case with modality {modality!r} in {root}."
        raise ValueError(msg)
    _warn_empty_images(empty, canonical)
    _warn_tolerated_labels(tolerated)
    return pd.concat(tables, ignore_index=True)


def _named_depths(depths: pd.Series, limit: int = 10) -> str:
    """``"case: N slices, ..."`` for at most ``limit`` volumes."""
    shown = ", ".join(f"{name}: {depth} slices" for name, depth in depths.head(limit).items())
    return shown + (f" and {len(depths) - limit} more" if len(depths) > limit else "")


def _check_z_range(samples: pd.DataFrame, z_range: tuple[int, int]) -> None:
    """Refuse a ``z_range`` that selects nothing; warn once about the cases it misses in whole or in part."""
    first, stop = (int(v) for v in z_range)
    if first < 0 or stop <= first:
        msg = f"z_range={tuple(z_range)}; expected (first, stop) axial indices with 0 <= first < stop."
        raise ValueError(msg)
    axial = samples[samples.plane == "axial"] if "plane" in samples.columns else samples
    depths = axial.groupby("volume_id", sort=True).slice_index.max() + 1
    if (depths <= first).all():
        msg = (
            f"z_range={tuple(z_range)} selects no slice: it starts past the last slice of every volume "
            f"({_named_depths(depths)}). z_range is (first, stop) in canonical axial indices; pick first below "
            f"{int(depths.max())}."
        )
        raise ValueError(msg)
    short = depths[depths < stop]
    if not short.empty:
        missed = depths[depths <= first]
        warnings.warn(
            f"z_range={tuple(z_range)} reaches past the last slice of {len(short)} volume(s) "
            f"({_named_depths(short)}); they keep only slices {first} to their last one, and "
            f"{len(missed)} of them ({', '.join(missed.index) or 'none'}) keep no slice and are left out.",
            stacklevel=3,
        )


def make_brats_dataset(
    root: str | Path,
    modality: Modality | str = "t2w",
    split: Split | str | None = None,
    test_ratio: float = 0.3,
    val_ratio: float = 0.1,
    seed: int = 0,
    slices: SliceSelection = "all",
    eval_slices: SliceSelection = "all",
    z_range: tuple[int, int] | None = None,
    on_error: OnError = "raise",
    planes: list[str] | tuple[str, ...] = ("axial",),
    sequences: list[str] | tuple[str, ...] | None = None,
    train_planes: list[str] | tuple[str, ...] = ("axial",),
) -> pd.DataFrame:
    """Build the BraTS slice table.

    Args:
        root: Folder holding the case folders.
        modality: Image modality, 2023 or 2021 name. Defaults to ``"t2w"``.
        split: Keep only this split; ``None`` keeps all. Defaults to ``None``.
        test_ratio: Fraction of subjects in the test split. Defaults to ``0.3``.
        val_ratio: Fraction of subjects in the validation split (train keeps the rest). Defaults to ``0.1``.
        seed: Seed of the subject split. Defaults to ``0``.
        slices: Slice selection for the train split. Defaults to ``"all"``.
        eval_slices: Slice selection for the val and test splits. Defaults to ``"all"``.
        z_range: ``(first, stop)`` canonical axial indices, required by ``"z_range"``, else an extra restriction.
        on_error: ``"raise"`` on a missing/corrupt file, or a segmentation off its image's grid or outside the label
            convention, or ``"skip"`` the case with a warning (then every image is fully decoded and checked here,
            so that no case fails later). Duplicate case names always raise. Defaults to ``"raise"``.
        planes: Slice planes of the val and test splits (any of ``axial``, ``coronal``, ``sagittal``). Defaults to
            ``("axial",)``.
        sequences: Three modalities whose same slice fills the three input channels (the first is the reference:
            ``image_path``, brain mask, 3D evaluation); adds ``channel_paths``. Defaults to ``None`` (``modality``).
        train_planes: Slice planes of the train split (same choices). Defaults to ``("axial",)``.

    Returns:
        One row per slice: ``image_path`` (volume), ``mask_path`` (seg), ``label_index``, ``volume_id``,
        ``volume_index``, ``slice_index``, ``plane``, ``subject``, ``split``; ``attrs["task"] == "segmentation"``.
    """
    if on_error not in {"raise", "skip"}:
        msg = f"on_error={on_error!r}; expected 'raise' or 'skip'."
        raise ValueError(msg)
    planes, train_planes = check_planes(planes), check_planes(train_planes)
    sequences = check_sequences(sequences)
    if sequences:
        modality = sequences[0]
    built = check_planes((*train_planes, *planes))
    samples = _case_table(Path(root), modality, "brain" in {slices, eval_slices}, on_error, built, sequences)
    if z_range is not None:
        _check_z_range(samples, z_range)
    assignment = split_subjects(sorted(set(samples.subject)), test_ratio, val_ratio, seed)
    samples["split"] = samples.subject.map(assignment)
    is_train = samples.split == Split.TRAIN.value
    samples = samples[(is_train & samples.plane.isin(train_planes)) | (~is_train & samples.plane.isin(planes))]
    is_train = samples.split == Split.TRAIN.value
    samples = pd.concat(
        [select_slices(samples[is_train], slices, z_range), select_slices(samples[~is_train], eval_slices, z_range)]
    )
    if split is not None:
        samples = samples[samples.split == Split(split).value]
    order = samples.plane.map(PLANES.index)
    samples = samples.assign(_order=order).sort_values(["volume_index", "_order", "slice_index"], ignore_index=True)
    samples = samples.drop(columns="_order")
    samples.attrs["task"] = "segmentation"
    return samples


def check_planes(planes: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    """Validated, de-duplicated slice planes in canonical order (``axial``, ``coronal``, ``sagittal``)."""
    chosen = [planes] if isinstance(planes, str) else list(planes)
    unknown = [p for p in chosen if p not in PLANES]
    if unknown or not chosen:
        msg = f"planes={chosen!r}; expected a non-empty subset of {list(PLANES)}."
        raise ValueError(msg)
    return tuple(p for p in PLANES if p in chosen)


def check_sequences(sequences: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Three distinct modalities (either BraTS naming, any order) in BraTS 2023 names, or ``()`` for none."""
    if not sequences:
        return ()
    names = tuple(canonical_modality(m) for m in sequences)
    if len(names) != 3 or len(set(names)) != 3:
        msg = f"sequences={list(sequences)!r}; expected three different modalities, e.g. [t2f, t1c, t2w]."
        raise ValueError(msg)
    return names


class BraTSDataset(NiftiSliceDataset):
    """One split of BraTS slices; see :func:`make_brats_dataset` for the arguments.

    Args:
        root: Folder holding the case folders.
        split: Split to serve. Defaults to ``None`` (all).
        modality: Image modality. Defaults to ``"t2w"``.
        test_ratio: Fraction of test subjects. Defaults to ``0.3``.
        val_ratio: Fraction of validation subjects. Defaults to ``0.1``.
        seed: Seed of the subject split. Defaults to ``0``.
        slices: Train slice selection. Defaults to ``"all"``.
        eval_slices: Val/test slice selection. Defaults to ``"all"``.
        z_range: Axial index range. Defaults to ``None``.
        on_error: ``"raise"`` or ``"skip"`` unreadable cases. Defaults to ``"raise"``.
        augmentations: Joint image/mask augmentations. Defaults to ``None``.
        cache_size: Decoded volumes kept per worker. Defaults to ``4``.
        planes: Val/test slice planes. Defaults to ``None`` (axial).
        channels: ``repeat``, ``adjacent`` or ``sequences`` (see ``volume_slices``). Defaults to ``"repeat"``.
        sequences: The three modalities of ``channels='sequences'``. Defaults to ``None``.
        train_planes: Train slice planes. Defaults to ``None`` (axial).
    """

    def __init__(
        self,
        root: str | Path,
        split: Split | str | None = None,
        modality: Modality | str = "t2w",
        test_ratio: float = 0.3,
        val_ratio: float = 0.1,
        seed: int = 0,
        slices: SliceSelection = "all",
        eval_slices: SliceSelection = "all",
        z_range: tuple[int, int] | None = None,
        on_error: OnError = "raise",
        augmentations: Transform | None = None,
        cache_size: int = 4,
        planes: list[str] | None = None,
        channels: Channels = "repeat",
        sequences: list[str] | None = None,
        train_planes: list[str] | None = None,
    ) -> None:
        check_channels(channels, sequences)
        samples = make_brats_dataset(
            root, modality, split, test_ratio, val_ratio, seed, slices, eval_slices, z_range, on_error,
            planes or ("axial",), sequences, train_planes or ("axial",),
        )  # fmt: skip
        super().__init__(samples, augmentations=augmentations, cache_size=cache_size, channels=channels)
        self.category = canonical_modality(sequences[0] if sequences else modality)


class BraTS(VolumeEvalLoadersMixin, AnomalibDataModule):
    """BraTS slices split by subject into train (normal and tumour slices, labelled), val and test.

    anomalib's own split modes are slice-level, so both are set to ``FROM_DIR`` and the three splits are built
    here from one subject-level assignment (:func:`split_subjects`).

    Args:
        root: Folder holding the case folders. Defaults to ``"./datasets/BraTS"``.
        modality: Image modality, 2023 or 2021 name. Defaults to ``"t2w"``.
        train_batch_size: Training batch size. Defaults to ``32``.
        eval_batch_size: Validation/test batch size. Defaults to ``32``.
        num_workers: DataLoader workers (each keeps its own volume cache). Defaults to ``8``.
        test_ratio: Fraction of subjects in test. Defaults to ``0.3``.
        val_ratio: Fraction of subjects in validation; train keeps the rest. Defaults to ``0.1``.
        slices: Train slice selection (``all``, ``brain``, ``z_range``, ``lesion``). Defaults to ``"all"``.
        eval_slices: Val/test slice selection. Defaults to ``"all"``.
        z_range: ``(first, stop)`` canonical axial indices. Defaults to ``None``.
        cache_size: Decoded volumes kept per worker. Defaults to ``4``.
        on_error: ``"raise"`` on unreadable cases or ``"skip"`` them with a warning. Defaults to ``"raise"``.
        train_augmentations: Train augmentations. Defaults to ``None``.
        val_augmentations: Validation augmentations. Defaults to ``None``.
        test_augmentations: Test augmentations. Defaults to ``None``.
        augmentations: Augmentations for every split without its own. Defaults to ``None``.
        seed: Seed of the subject split. Defaults to ``0``.
        planes: Slice planes served for validation and test (``[axial]``, or any subset of ``axial``, ``coronal``,
            ``sagittal``: tri-planar inference, fused per voxel by the 3D evaluation). Defaults to ``None`` (axial).
        channels: What fills CLIP's three input channels: ``repeat`` (the slice, 3 times), ``adjacent`` (2.5D:
            slices k-1, k, k+1, edges repeat) or ``sequences`` (the same slice of ``sequences``). Defaults to
            ``"repeat"``.
        sequences: Three modalities for ``channels='sequences'``, any order, either naming (e.g.
            ``[t2f, t1c, t2w]``); the first is the reference (brain mask, 3D evaluation, overlays) and replaces
            ``modality``. Defaults to ``None``.
        train_planes: Slice planes served for training (same choices; an option: training on several planes
            changes what the model learns). Batches never mix planes
            (:class:`~anomalib_medclip.data.samplers.GroupedBatchSampler`). Defaults to ``None`` (axial).
    """

    def __init__(
        self,
        root: str | Path = "./datasets/BraTS",
        modality: Modality | str = "t2w",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        test_ratio: float = 0.3,
        val_ratio: float = 0.1,
        slices: SliceSelection = "all",
        eval_slices: SliceSelection = "all",
        z_range: tuple[int, int] | None = None,
        cache_size: int = 4,
        on_error: OnError = "raise",
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        seed: int = 0,
        planes: list[str] | None = None,
        channels: Channels = "repeat",
        sequences: list[str] | None = None,
        train_planes: list[str] | None = None,
    ) -> None:
        check_channels(channels, sequences)
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            val_split_mode=ValSplitMode.FROM_DIR,
            test_split_mode=TestSplitMode.FROM_DIR,
            seed=seed,
        )
        self.root = Path(root)
        self.planes = check_planes(planes or ("axial",))
        self.train_planes = check_planes(train_planes or ("axial",))
        self.channels = channels
        self.sequences = check_sequences(sequences)
        self.modality = self.sequences[0] if self.sequences else canonical_modality(modality)
        self.ratios = {Split.TEST: test_ratio, Split.VAL: val_ratio, Split.TRAIN: 1.0 - test_ratio - val_ratio}
        self.slices, self.eval_slices, self.z_range = slices, eval_slices, z_range
        self.cache_size = cache_size
        self.on_error = on_error
        self.category = self.modality

    @property
    def object_name(self) -> str:
        """Object phrase for text prompts."""
        return "brain MRI scan"

    @property
    def reference_channel(self) -> int:
        """The input channel that shows the slice itself (the centre one for ``adjacent``): what overlays show."""
        return 1 if self.channels == "adjacent" else 0

    def describe(self) -> dict[str, Any]:
        """What defines the data and its split in a report: absolute root, modality, ratios, seed, slice selection."""
        return {
            "root": str(self.root.resolve()),
            "modality": self.modality,
            "ratios": {split.value: ratio for split, ratio in self.ratios.items()},
            "seed": self.seed,
            "slices": self.slices,
            "eval_slices": self.eval_slices,
            "z_range": self.z_range,
            "on_error": self.on_error,
            **describe_inputs(self.planes, self.channels, self.sequences, self.train_planes),
        }

    def _setup(self, _stage: str | None = None) -> None:
        """Build train/val/test from one subject-level assignment."""
        samples = make_brats_dataset(
            self.root,
            self.modality,
            None,
            self.ratios[Split.TEST],
            self.ratios[Split.VAL],
            self.seed,
            self.slices,
            self.eval_slices,
            self.z_range,
            self.on_error,
            self.planes,
            self.sequences,
            self.train_planes,
        )
        for split, ratio in self.ratios.items():
            part = samples[samples.split == split.value].copy()
            part.attrs = dict(samples.attrs)
            if part.empty and ratio > 1e-9:
                msg = f"The {split.value} split of {self.root} has no slices; add subjects or change the ratios."
                raise ValueError(msg)
            dataset = NiftiSliceDataset(part, cache_size=self.cache_size, channels=self.channels)
            setattr(self, f"{split.value}_data", dataset)

    def train_dataloader(self) -> DataLoader:
        """The shuffled train loader of anomalib; with several ``train_planes``, batches of one plane each."""
        if len(self.train_planes) == 1:
            return super().train_dataloader()
        return grouped_train_loader(self, groups=self.train_data.samples.plane.tolist())

    def _create_test_split(self) -> None:
        """Keep the subject-level test split (anomalib's ``split_by_label`` would reorder and copy it)."""
