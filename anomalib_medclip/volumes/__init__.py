# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""3D evaluation of slice-wise predictions: stacking, volumetric metrics, aligned NIfTI maps, reports."""

from anomalib_medclip.volumes.evaluator import ThresholdPolicy, VolumeEvaluator
from anomalib_medclip.volumes.metrics import VolumeScores, VoxelCurves, dice_2d_mean, volume_scores
from anomalib_medclip.volumes.stacking import postprocess_volume, remove_small_components, stack_slices, write_nifti

__all__ = [
    "ThresholdPolicy",
    "VolumeEvaluator",
    "VolumeScores",
    "VoxelCurves",
    "dice_2d_mean",
    "postprocess_volume",
    "remove_small_components",
    "stack_slices",
    "volume_scores",
    "write_nifti",
]
