# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""3D evaluation of slice-wise predictions: stacking, volumetric metrics, aligned NIfTI maps, reports.

- :class:`VolumeEvaluator`: Lightning callback (returned by the models' ``configure_callbacks()``) that regroups
  slices into volumes, evaluates them in 3D and writes NIfTI maps, tables, plots and predict-time reports;
- :func:`volume_metrics`: per-volume Dice/sensitivity/specificity/PPV as anomalib metrics for ``Evaluator``;
- the pieces they are made of (stacking, post-processing, MONAI/torchmetrics-based metrics, atomic writers).

See ``anomalib_medclip/volumes/README.md`` for the rules (normalisation, brain mask, empty ground truth, thresholds).
"""

from anomalib_medclip.volumes.anomalib_metrics import VolumeStat, volume_metrics
from anomalib_medclip.volumes.evaluator import ThresholdPolicy, VolumeEvaluator
from anomalib_medclip.volumes.metrics import VolumeScores, VoxelCurves, dice_2d_mean, hd95, volume_scores
from anomalib_medclip.volumes.stacking import (
    postprocess_volume,
    remove_small_components,
    stack_slices,
    write_nifti,
)

__all__ = [
    "ThresholdPolicy",
    "VolumeEvaluator",
    "VolumeScores",
    "VolumeStat",
    "VoxelCurves",
    "dice_2d_mean",
    "hd95",
    "postprocess_volume",
    "remove_small_components",
    "stack_slices",
    "volume_metrics",
    "volume_scores",
    "write_nifti",
]
