# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""3D evaluation of slice-wise predictions: stacking, volumetric metrics, aligned NIfTI maps, reports.

- :class:`VolumeEvaluator`: Lightning callback (a model component, returned by the models' ``configure_callbacks()``)
  that wires the parts below; its options are :class:`EvaluationSettings`;
- :class:`SliceBuffer`: slice buffering per volume, completeness, DDP regrouping;
- :func:`finalise_volume`: one volume from slice maps to prediction and metrics, on arrays (:class:`VolumeResult`);
- :class:`VolumeReport`: NIfTI maps, ``metrics_per_volume.csv``, ``summary.json``, plots, predict reports;
- :func:`volume_metrics`: per-volume Dice/sensitivity/specificity/PPV as anomalib metrics for ``Evaluator``;
- the pieces they are made of (stacking, post-processing, MONAI/torchmetrics-based metrics).

See ``anomalib_medclip/volumes/README.md`` for the rules (normalisation, brain mask, empty ground truth, thresholds).
"""

from anomalib_medclip.volumes.anomalib_metrics import VolumeStat, volume_metrics
from anomalib_medclip.volumes.buffer import BufferedVolume, SliceBuffer
from anomalib_medclip.volumes.evaluator import VolumeEvaluator
from anomalib_medclip.volumes.finalise import (
    DiceCurve,
    VolumeResult,
    finalise_volume,
    oracle_threshold,
    read_ground_truth,
)
from anomalib_medclip.volumes.metrics import VolumeScores, VoxelCurves, dice_2d_mean, hd95, volume_scores
from anomalib_medclip.volumes.reports import VolumeReport
from anomalib_medclip.volumes.settings import EvaluationSettings, ThresholdPolicy
from anomalib_medclip.volumes.stacking import (
    erode_brain,
    fuse_planes,
    median_filter_at,
    postprocess_volume,
    remove_small_components,
    stack_slices,
    write_nifti,
)

__all__ = [
    "BufferedVolume",
    "DiceCurve",
    "EvaluationSettings",
    "SliceBuffer",
    "ThresholdPolicy",
    "VolumeEvaluator",
    "VolumeReport",
    "VolumeResult",
    "VolumeScores",
    "VolumeStat",
    "VoxelCurves",
    "dice_2d_mean",
    "erode_brain",
    "finalise_volume",
    "fuse_planes",
    "hd95",
    "median_filter_at",
    "oracle_threshold",
    "postprocess_volume",
    "read_ground_truth",
    "remove_small_components",
    "stack_slices",
    "volume_metrics",
    "volume_scores",
    "write_nifti",
]
