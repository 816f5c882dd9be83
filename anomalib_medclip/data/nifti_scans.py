# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Unlabelled NIfTI scans as axial slices, for ``anomalib predict``.

``path`` is one ``.nii``/``.nii.gz`` file or a folder of them (not recursive). Slices are served exactly as in
:class:`~anomalib_medclip.data.brats.BraTS` (same reader, orientation and scaling), without masks or labels, so a
model trained on BraTS can be run on new scans and its slice maps stacked back per volume (``volume_id``,
``slice_index``) and saved over the source scan with :func:`~anomalib_medclip.data.nifti.to_source_orientation`.

Example:
    >>> from anomalib_medclip.data import NiftiScans
    >>> datamodule = NiftiScans(path="scans/", modality="t2f")  # doctest: +SKIP
    >>> # anomalib predict --model ... --data anomalib_medclip.data.NiftiScans --data.path scans/
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
from anomalib.data import AnomalibDataModule
from anomalib.data.utils import LabelName, Split
from torch.utils.data import DataLoader

from anomalib_medclip.data.brats import MODALITY_ALIASES, Modality, canonical_modality
from anomalib_medclip.data.nifti import read_geometry
from anomalib_medclip.data.volume_slices import NiftiSliceDataset, VolumeEvalLoadersMixin

__all__ = ["NiftiScans", "make_nifti_scans_dataset"]

_SUFFIX = re.compile(r"\.nii(\.gz)?$")


def _modality_pattern(modality: str) -> re.Pattern[str]:
    """Filename pattern ``<sep><name>.nii[.gz]`` for a modality under either BraTS naming."""
    canonical = canonical_modality(modality)
    names = [canonical, *(alias for alias, target in MODALITY_ALIASES.items() if target == canonical)]
    return re.compile(rf"[-_.]({'|'.join(names)})\.nii(\.gz)?$", re.IGNORECASE)


def make_nifti_scans_dataset(path: str | Path, modality: Modality | str | None = None) -> pd.DataFrame:
    """Slice table of unlabelled scans (``label_index`` unknown, no ``mask_path``, split ``test``).

    Args:
        path: A NIfTI file or a folder of NIfTI files.
        modality: Keep only files named ``*-<modality>.nii[.gz]`` or ``*_<modality>.nii[.gz]`` (either BraTS
            naming). Defaults to ``None`` (every file except ``*seg*``).

    Returns:
        One row per axial slice with ``image_path``, ``mask_path`` (``""``), ``label_index``, ``volume_id``,
        ``volume_index``, ``slice_index`` and ``split``.

    Raises:
        FileNotFoundError: If ``path`` does not exist or holds no matching NIfTI file.
    """
    path = Path(path)
    if not path.exists():
        msg = f"Scan path {path} does not exist; pass a .nii/.nii.gz file or a folder of them."
        raise FileNotFoundError(msg)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and _SUFFIX.search(p.name))
    pattern = _modality_pattern(modality) if modality else None
    files = [f for f in files if (pattern.search(f.name) if pattern else "seg" not in f.name.lower())]
    if not files:
        msg = f"No NIfTI scan in {path} matches modality {modality!r} (expected names like case-t2w.nii.gz)."
        raise FileNotFoundError(msg)
    rows = []
    for index, file in enumerate(files):
        shape, _ = read_geometry(file)
        volume_id = _SUFFIX.sub("", file.name)
        rows += [
            (str(file), "", int(LabelName.UNKNOWN), volume_id, index, z, Split.TEST.value) for z in range(shape[2])
        ]
    columns = ["image_path", "mask_path", "label_index", "volume_id", "volume_index", "slice_index", "split"]
    samples = pd.DataFrame(rows, columns=columns)
    samples.attrs["task"] = "segmentation"
    return samples


class NiftiScans(VolumeEvalLoadersMixin, AnomalibDataModule):
    """Unlabelled scans for prediction; ``predict_dataloader`` (and ``test_dataloader``) serve every slice.

    Args:
        path: A NIfTI file or a folder of NIfTI files.
        modality: Filename modality filter (either BraTS naming). Defaults to ``None``.
        object_name: Object phrase for text prompts. Defaults to ``"brain MRI scan"``.
        eval_batch_size: Batch size. Defaults to ``32``.
        num_workers: DataLoader workers. Defaults to ``2``.
        cache_size: Decoded volumes kept per worker. Defaults to ``4``.
    """

    def __init__(
        self,
        path: str | Path,
        modality: Modality | str | None = None,
        object_name: str = "brain MRI scan",
        eval_batch_size: int = 32,
        num_workers: int = 2,
        cache_size: int = 4,
    ) -> None:
        super().__init__(train_batch_size=eval_batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.path = Path(path)
        self.modality = canonical_modality(modality) if modality else None
        self._object_name = object_name
        self.cache_size = cache_size
        self.category = self.modality or "scans"

    @property
    def object_name(self) -> str:
        """Object phrase for text prompts."""
        return self._object_name

    def describe(self) -> dict[str, Any]:
        """What defines the scans in a report: absolute path, modality filter, object phrase."""
        return {"path": str(self.path.resolve()), "modality": self.modality, "object_name": self.object_name}

    def _setup(self, _stage: str | None = None) -> None:
        """Build the slice table of every scan as the test (= predict) set."""
        samples = make_nifti_scans_dataset(self.path, self.modality)
        self.test_data = NiftiSliceDataset(samples, cache_size=self.cache_size)

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
