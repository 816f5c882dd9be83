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
from torchvision.transforms.v2 import Transform

from anomalib_medclip.data.nifti import read_geometry, read_volume
from anomalib_medclip.data.volume_slices import NiftiSliceDataset, VolumeEvalLoadersMixin

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

    def subject(self, case_id: str) -> str:
        """Subject of a case: the BraTS 2023 time point suffix is dropped."""
        return case_id.rsplit("-", 1)[0] if self.separator == "-" else case_id


_CONVENTIONS = (
    _Convention("BraTS 2023", re.compile(r"^BraTS-[A-Z]+-\d{5}-\d{3}$"), "-", {m: m for m in _MODALITIES_2021}),
    _Convention("BraTS 2021", re.compile(r"^BraTS20\d\d_\d{5}$"), "_", _MODALITIES_2021),
)


def canonical_modality(modality: str) -> str:
    """Map a modality name of either convention to the BraTS 2023 name (``flair`` -> ``t2f``)."""
    name = MODALITY_ALIASES.get(modality.lower(), modality.lower())
    if name not in _MODALITIES_2021:
        valid = sorted([*_MODALITIES_2021, *MODALITY_ALIASES])
        msg = f"Unknown BraTS modality {modality!r}; expected one of {valid}."
        raise ValueError(msg)
    return name


def _find_cases(root: Path) -> tuple[_Convention, list[Path]]:
    """Case folders under ``root`` (or one level below) and the convention they follow."""
    if not root.is_dir():
        msg = f"BraTS root {root} does not exist or is not a folder. Point `root` at the folder of case folders."
        raise FileNotFoundError(msg)
    candidates = [p for p in root.iterdir() if p.is_dir()]
    candidates += [q for p in candidates for q in p.iterdir() if q.is_dir()]
    for convention in _CONVENTIONS:
        cases = sorted(p for p in candidates if convention.case_pattern.match(p.name))
        if cases:
            return convention, cases
    msg = (
        f"No BraTS case folders in {root} (looked for 'BraTS-MET-XXXXX-YYY/' and 'BraTS2021_XXXXX/' folders, "
        "directly or one level down)."
    )
    raise FileNotFoundError(msg)


def _case_file(case: Path, convention: _Convention, key: str) -> Path:
    """``<case>/<case><sep><key>.nii.gz`` (or ``.nii``)."""
    stem = f"{case.name}{convention.separator}{key}"
    plain = case / f"{stem}.nii"
    return plain if plain.is_file() else case / f"{stem}.nii.gz"


def _case_slices(image_path: Path, seg_path: Path, need_brain: bool) -> dict[str, np.ndarray]:
    """Per-slice tumour (and optionally non-empty-image) flags of one case, with its geometry checked."""
    image_shape, _ = read_geometry(image_path)
    if not seg_path.is_file():
        msg = f"Segmentation {seg_path} is missing; BraTS cases need one (NiftiScans serves unlabelled scans)."
        raise FileNotFoundError(msg)
    seg = read_volume(seg_path).data
    if seg.shape != image_shape:
        msg = f"Segmentation {seg_path} has canonical shape {seg.shape} but {image_path} has {image_shape}."
        raise ValueError(msg)
    columns = {"label_index": (seg > 0).any(axis=(0, 1)).astype(int)}
    if need_brain:
        columns["brain"] = (read_volume(image_path).data != 0).any(axis=(0, 1))
    return columns


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
    if z_range is not None:
        keep &= samples.slice_index.between(z_range[0], z_range[1] - 1)
    if mode == "brain":
        keep &= samples.brain.astype(bool)
    elif mode == "lesion":
        keep &= samples.label_index == 1
    elif mode not in {"all", "z_range"}:
        msg = f"Unknown slice selection {mode!r}; expected 'all', 'brain', 'z_range' or 'lesion'."
        raise ValueError(msg)
    return samples[keep]


def _case_table(root: Path, modality: str, need_brain: bool, on_error: OnError) -> pd.DataFrame:
    """One row per axial slice of every readable case (no split yet)."""
    convention, cases = _find_cases(root)
    key = convention.modalities[canonical_modality(modality)]
    tables = []
    for volume_index, case in enumerate(cases):
        image_path = _case_file(case, convention, key)
        seg_path = _case_file(case, convention, "seg")
        try:
            columns = _case_slices(image_path, seg_path, need_brain)
        except (OSError, ValueError) as err:
            if on_error == "raise":
                raise
            warnings.warn(f"Skipping BraTS case {case.name}: {err}", stacklevel=3)
            continue
        table = pd.DataFrame(columns)
        table["slice_index"] = np.arange(len(table))
        table["image_path"], table["mask_path"] = str(image_path), str(seg_path)
        table["volume_id"], table["volume_index"] = case.name, volume_index
        table["subject"] = convention.subject(case.name)
        tables.append(table)
    if not tables:
        msg = f"No readable BraTS case with modality {modality!r} in {root}."
        raise ValueError(msg)
    return pd.concat(tables, ignore_index=True)


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
        on_error: ``"raise"`` on a missing/corrupt file or shape mismatch, or ``"skip"`` the case with a warning.

    Returns:
        One row per slice: ``image_path`` (volume), ``mask_path`` (seg), ``label_index``, ``volume_id``,
        ``volume_index``, ``slice_index``, ``subject``, ``split``; ``attrs["task"] == "segmentation"``.
    """
    if on_error not in {"raise", "skip"}:
        msg = f"on_error={on_error!r}; expected 'raise' or 'skip'."
        raise ValueError(msg)
    samples = _case_table(Path(root), modality, "brain" in {slices, eval_slices}, on_error)
    assignment = split_subjects(sorted(set(samples.subject)), test_ratio, val_ratio, seed)
    samples["split"] = samples.subject.map(assignment)
    is_train = samples.split == Split.TRAIN.value
    samples = pd.concat(
        [select_slices(samples[is_train], slices, z_range), select_slices(samples[~is_train], eval_slices, z_range)]
    )
    if split is not None:
        samples = samples[samples.split == Split(split).value]
    samples = samples.sort_values(["volume_index", "slice_index"], ignore_index=True)
    samples.attrs["task"] = "segmentation"
    return samples


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
    ) -> None:
        samples = make_brats_dataset(
            root, modality, split, test_ratio, val_ratio, seed, slices, eval_slices, z_range, on_error
        )
        super().__init__(samples, augmentations=augmentations, cache_size=cache_size)
        self.category = canonical_modality(modality)


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
    ) -> None:
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
        self.modality = canonical_modality(modality)
        self.ratios = {Split.TEST: test_ratio, Split.VAL: val_ratio, Split.TRAIN: 1.0 - test_ratio - val_ratio}
        self.slices, self.eval_slices, self.z_range = slices, eval_slices, z_range
        self.cache_size = cache_size
        self.on_error = on_error
        self.category = self.modality

    @property
    def object_name(self) -> str:
        """Object phrase for text prompts."""
        return "brain MRI scan"

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
        )
        for split, ratio in self.ratios.items():
            part = samples[samples.split == split.value].copy()
            part.attrs = dict(samples.attrs)
            if part.empty and ratio > 1e-9:
                msg = f"The {split.value} split of {self.root} has no slices; add subjects or change the ratios."
                raise ValueError(msg)
            setattr(self, f"{split.value}_data", NiftiSliceDataset(part, cache_size=self.cache_size))

    def _create_test_split(self) -> None:
        """Keep the subject-level test split (anomalib's ``split_by_label`` would reorder and copy it)."""
