# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Slice items and batches that remember which volume they come from.

A 3D scan is served to 2D CLIP models as axial slices. Each slice item keeps anomalib's image fields
(``image_path`` stays the real volume file) and adds three fields so that predictions can be regrouped per
volume whatever order the loader used:

- ``volume_id``: the case identifier (e.g. ``BraTS-MET-00001-000``);
- ``volume_index``: an integer code of the volume, stable within a datamodule (tensor states need integers);
- ``slice_index``: the axial index ``z`` of the slice in the canonical (RAS) volume.

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


@dataclass
class NumpyMedSliceBatch(NumpyImageBatch):
    """Numpy batch of slices; ``volume_id`` is a list, the indices are arrays of shape ``(B,)``."""

    item_class: ClassVar[type[NumpyImageItem]] = NumpyMedSliceItem
    volume_id: list[str] | None = None
    volume_index: np.ndarray | None = None
    slice_index: np.ndarray | None = None


@dataclass
class MedSliceItem(ImageItem):
    """Torch slice item: an image item plus its volume identity."""

    numpy_class: ClassVar[type[NumpyImageItem]] = NumpyMedSliceItem
    volume_id: str | None = None
    volume_index: torch.Tensor | int | None = None
    slice_index: torch.Tensor | int | None = None


@dataclass
class MedSliceBatch(ImageBatch):
    """Torch batch of slices; ``volume_id`` is a list, the indices are integer tensors of shape ``(B,)``."""

    item_class: ClassVar[type[ImageItem]] = MedSliceItem
    numpy_class: ClassVar[type[NumpyImageBatch]] = NumpyMedSliceBatch
    volume_id: list[str] | None = None
    volume_index: torch.Tensor | None = None
    slice_index: torch.Tensor | None = None
