# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Medical datamodules, NIfTI volume reading and slice dataclasses."""

from anomalib_medclip.data.dataclasses import MedSliceBatch, MedSliceItem, NumpyMedSliceBatch, NumpyMedSliceItem
from anomalib_medclip.data.nifti import (
    Volume,
    image_to_slice,
    read_volume,
    slice_to_image,
    to_canonical_orientation,
    to_source_orientation,
)

__all__ = [
    "MedSliceBatch",
    "MedSliceItem",
    "NumpyMedSliceBatch",
    "NumpyMedSliceItem",
    "Volume",
    "image_to_slice",
    "read_volume",
    "slice_to_image",
    "to_canonical_orientation",
    "to_source_orientation",
]
