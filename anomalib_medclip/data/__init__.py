# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Medical datamodules, NIfTI volume reading in canonical orientation, and the slice dataclasses.

Datamodules: BMAD in every layout (``MedBMAD``), BraTS volumes as slices (``BraTS``), unlabelled NIfTI scans
(``NiftiScans``) and a synthetic demo set (``DemoBraTS``).

Short class names are unique across anomalib (anomalib already has ``BMAD``, hence ``MedBMAD``), so they work with
the stock CLI, e.g. ``anomalib train --data DemoBraTS``.
"""

from anomalib_medclip.data.bmad import MedBMAD, MedBMADDataset, MedImageDataset, make_med_bmad_dataset
from anomalib_medclip.data.bmad_layout import read_med_image, read_med_mask
from anomalib_medclip.data.brats import BraTS, BraTSDataset, make_brats_dataset, split_subjects
from anomalib_medclip.data.dataclasses import MedSliceBatch, MedSliceItem, NumpyMedSliceBatch, NumpyMedSliceItem
from anomalib_medclip.data.demo_brats import DemoBraTS, generate_demo_brats
from anomalib_medclip.data.nifti import (
    Volume,
    image_to_slice,
    read_geometry,
    read_volume,
    slice_to_image,
    to_canonical_orientation,
    to_source_orientation,
)
from anomalib_medclip.data.nifti_scans import NiftiScans, make_nifti_scans_dataset
from anomalib_medclip.data.volume_slices import NiftiSliceDataset, scale_slice

__all__ = [
    "BraTS",
    "BraTSDataset",
    "DemoBraTS",
    "MedBMAD",
    "MedBMADDataset",
    "MedImageDataset",
    "MedSliceBatch",
    "MedSliceItem",
    "NiftiScans",
    "NiftiSliceDataset",
    "NumpyMedSliceBatch",
    "NumpyMedSliceItem",
    "Volume",
    "generate_demo_brats",
    "image_to_slice",
    "make_brats_dataset",
    "make_med_bmad_dataset",
    "make_nifti_scans_dataset",
    "read_geometry",
    "read_med_image",
    "read_med_mask",
    "read_volume",
    "scale_slice",
    "slice_to_image",
    "split_subjects",
    "to_canonical_orientation",
    "to_source_orientation",
]
