# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Slice items and batches that remember which volume they come from.

A 3D scan is served to 2D CLIP models as axial slices. Each slice item keeps anomalib's image fields
(``image_path`` stays the real volume file) and adds three fields so that predictions can be regrouped per
volume whatever order the loader used, and the brain mask of the slice:

- ``volume_id``: the case identifier (e.g. ``BraTS-MET-00001-000``);
- ``volume_index``: an integer code of the volume, stable within a datamodule (tensor states need integers);
- ``slice_index``: the index of the slice along its plane's axis in the canonical (RAS) volume (``z`` for axial);
- ``plane``: ``axial`` (default), ``coronal`` or ``sagittal`` (tri-planar inference);
- ``brain_mask``: the slice's brain voxels by :func:`~anomalib_medclip.data.nifti.brain_mask` of the source
  intensities, at the served (native) size and orientation, so that 2D metrics can count the same voxels as the 3D
  evaluation (the served image is scaled and, after the pre-processor, normalised: it no longer shows the rule).

The numpy twins exist because anomalib's ``to_numpy()`` and ``items`` forward every field to the twin class.

Example:
    >>> import torch
    >>> item = MedSliceItem(image=torch.rand(3, 8, 8), gt_label=torch.tensor(1), volume_id="case_1",
    ...                     volume_index=torch.tensor(0), slice_index=torch.tensor(4))
    >>> batch = MedSliceBatch.collate([item, item])
    >>> batch.volume_id, batch.slice_index.tolist()
    (['case_1', 'case_1'], [4, 4])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from anomalib.data.dataclasses import ImageBatch, ImageItem, NumpyImageBatch, NumpyImageItem

__all__ = ["MedSliceBatch", "MedSliceItem", "NumpyMedSliceBatch", "NumpyMedSliceItem"]


@dataclass
class NumpyMedSliceItem(NumpyImageItem):
    """Numpy slice item: an image item plus its volume identity."""

    volume_id: str | None = None
    volume_index: int | np.ndarray | None = None
    slice_index: int | np.ndarray | None = None
    brain_mask: np.ndarray | None = None
    plane: str | None = None


@dataclass
class NumpyMedSliceBatch(NumpyImageBatch):
    """Numpy batch of slices; ``volume_id`` is a list, the indices are arrays of shape ``(B,)``."""

    item_class: ClassVar[type[NumpyImageItem]] = NumpyMedSliceItem
    volume_id: list[str] | None = None
    volume_index: np.ndarray | None = None
    slice_index: np.ndarray | None = None
    brain_mask: np.ndarray | None = None
    plane: list[str] | None = None


@dataclass
class MedSliceItem(ImageItem):
    """Torch slice item: an image item plus its volume identity."""

    numpy_class: ClassVar[type[NumpyImageItem]] = NumpyMedSliceItem
    volume_id: str | None = None
    volume_index: torch.Tensor | int | None = None
    slice_index: torch.Tensor | int | None = None
    brain_mask: torch.Tensor | None = None
    plane: str | None = None


@dataclass
class MedSliceBatch(ImageBatch):
    """Torch batch of slices; ``volume_id`` is a list, the indices are integer tensors of shape ``(B,)``."""

    item_class: ClassVar[type[ImageItem]] = MedSliceItem
    numpy_class: ClassVar[type[NumpyImageBatch]] = NumpyMedSliceBatch
    volume_id: list[str] | None = None
    volume_index: torch.Tensor | None = None
    slice_index: torch.Tensor | None = None
    brain_mask: torch.Tensor | None = None
    plane: list[str] | None = None
