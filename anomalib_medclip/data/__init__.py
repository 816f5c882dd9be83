# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Medical datamodules and slice dataclasses."""

from anomalib_medclip.data.dataclasses import MedSliceBatch, MedSliceItem, NumpyMedSliceBatch, NumpyMedSliceItem

__all__ = ["MedSliceBatch", "MedSliceItem", "NumpyMedSliceBatch", "NumpyMedSliceItem"]
