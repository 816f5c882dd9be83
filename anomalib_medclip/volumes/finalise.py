# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Finalising one volume: from its slice maps to a 3D score map, a prediction and its metrics, on arrays only.

:func:`finalise_volume` is a pure function (no Lightning, no file access), so that the 3D rules can be tested and
reused on arrays:

1. stack the slice maps of each served plane by ``slice_index`` onto the canonical grid
   (:func:`~anomalib_medclip.volumes.stack_slices`), fuse the planes per voxel (``fusion``: mean or max) and apply
   the optional 3D Gaussian smoothing;
2. keep the voxels that count: inside the brain (:func:`~anomalib_medclip.data.nifti.brain_mask` of the source
   intensities) with ``brain_only``, else all; the optional slice-wise brain-mask erosion (``brain_erosion``) and 3D
   median filter (``median_kernel``, computed at those voxels) follow; the score map is 0 outside the (eroded) brain;
3. threshold by the policy (``oracle``: the per-volume Dice-optimal threshold on a 0.01 grid, an upper bound;
   ``val_dice``: the threshold with the best pooled Dice of the validation volumes, given by the caller), then
   remove components under ``min_component_voxels``;
4. with ground truth, the per-volume metrics on the counted voxels (Dice, sensitivity, specificity, PPV, mean 2D
   Dice, optional HD95) and the per-slice Dice with each slice's distance from the brain centre (for the plots).

:func:`read_ground_truth` is the thin file-reading part (``seg > 0`` at native resolution).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_medclip.data.nifti import Volume, brain_mask, lesion_mask, read_label_map
from anomalib_medclip.volumes.metrics import VolumeScores, dice_2d_mean, hd95, volume_scores
from anomalib_medclip.volumes.settings import EvaluationSettings
from anomalib_medclip.volumes.stacking import (
    erode_brain,
    fuse_planes,
    median_filter_at,
    postprocess_volume,
    remove_small_components,
    stack_slices,
)

__all__ = [
    "DiceCurve",
    "VolumeResult",
    "counted_values",
    "finalise_volume",
    "oracle_threshold",
    "postprocessed_score",
    "read_ground_truth",
]

ORACLE_GRID = np.linspace(0.0, 1.0, 101)
SliceMaps = Mapping[int, np.ndarray] | Mapping[str, Mapping[int, np.ndarray]]


class DiceCurve:
    """Dice of ``score > t`` at every ``t`` of the 0.01 grid, pooled over volumes, in constant memory.

    Each voxel's score is located once among the grid values (``np.searchsorted``); the predicted and true-positive
    counts per threshold follow from cumulative histograms, so ``dice()`` equals counting ``score > t`` directly.
    Curves of several processes add up with :meth:`merge`.
    """

    def __init__(self) -> None:
        self.predicted = np.zeros(len(ORACLE_GRID), np.int64)
        self.hits = np.zeros(len(ORACLE_GRID), np.int64)
        self.lesion = 0

    def update(self, score: np.ndarray, gt: np.ndarray) -> DiceCurve:
        """Add voxels (scores and their ground truth, same shape)."""
        below = np.searchsorted(ORACLE_GRID, score.ravel(), side="left")  # grid values < score
        for counts, chosen in ((self.predicted, below), (self.hits, below[gt.ravel()])):
            histogram = np.bincount(chosen, minlength=len(ORACLE_GRID) + 1)
            counts += histogram[::-1].cumsum()[::-1][1:]  # voxels with more than k + 1 grid values below
        self.lesion += int(np.count_nonzero(gt))
        return self

    def merge(self, other: DiceCurve) -> None:
        """Add another curve's counts."""
        self.predicted += other.predicted
        self.hits += other.hits
        self.lesion += other.lesion

    def dice(self) -> np.ndarray:
        """Dice per grid threshold (``2 TP / max(lesion + predicted, 1)``)."""
        return 2 * self.hits / np.maximum(self.lesion + self.predicted, 1)

    def best_threshold(self) -> float:
        """The grid threshold with the best Dice (the first if tied)."""
        return float(ORACLE_GRID[int(np.argmax(self.dice()))])


@dataclass(frozen=True)
class VolumeResult:
    """One finalised volume, in canonical (RAS+) voxel order.

    Attributes:
        score: Stacked, post-processed anomaly map (float32), 0 outside the counted voxels.
        pred: Predicted mask (bool), inside the counted voxels.
        counted: Voxels that count (the brain with ``brain_only``, else all).
        threshold: Threshold applied to ``score``.
        spacing: Voxel sizes in mm.
        gt: Ground truth (bool), or ``None`` for an unlabelled scan (then no metric below is set).
        scores: Dice, sensitivity, specificity, PPV and voxel counts on the counted voxels.
        dice_2d_mean: Mean 2D Dice over the slices with a counted lesion.
        slice_dice: Per-slice 2D Dice ``(Z,)``, NaN on lesion-free slices.
        slice_distance: Per-slice normalised axial distance from the brain centre ``(Z,)`` (0 centre, 1 brain edge).
        hd95: MONAI's HD95 in mm (only with the ``hd95`` option).
    """

    score: np.ndarray
    pred: np.ndarray
    counted: np.ndarray
    threshold: float
    spacing: tuple[float, float, float]
    gt: np.ndarray | None = None
    scores: VolumeScores | None = None
    dice_2d_mean: float = float("nan")
    slice_dice: np.ndarray | None = None
    slice_distance: np.ndarray | None = None
    hd95: float | None = None

    def counted_voxels(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ground truth of the counted voxels, 1-D, in memory order (for the voxel curves)."""
        if self.gt is None:
            msg = "An unlabelled volume has no ground truth to pair its scores with."
            raise ValueError(msg)
        return counted_values(self.score, self.gt, self.counted)

    @property
    def lesion_ml(self) -> float:
        """Counted lesion volume in ml (NaN without ground truth)."""
        if self.scores is None:
            return float("nan")
        return self.scores.lesion_voxels * float(np.prod(self.spacing)) / 1000.0

    @property
    def predicted_ml(self) -> float:
        """Predicted anomalous volume in ml."""
        return float(self.pred.sum() * np.prod(self.spacing) / 1000.0)

    def metric_row(self) -> dict[str, Any]:
        """The per-volume table's values (``volume_id`` and paths are the caller's)."""
        if self.scores is None:
            msg = "An unlabelled volume has no metrics; metric_row() needs a VolumeResult with ground truth."
            raise ValueError(msg)
        return {
            "dice": self.scores.dice,
            "sensitivity": self.scores.sensitivity,
            "specificity": self.scores.specificity,
            "ppv": self.scores.ppv,
            "lesion_voxels": self.scores.lesion_voxels,
            "predicted_voxels": self.scores.predicted_voxels,
            "dice_2d_mean": self.dice_2d_mean,
            "threshold": self.threshold,
            **({"hd95": self.hd95} if self.hd95 is not None else {}),
            "lesion_ml": self.lesion_ml,
            "note": self.note,
        }

    @property
    def note(self) -> str:
        """Why some of the volume's metrics are undefined (empty when all are defined)."""
        if not self.counted.any():
            return "no counted voxels (the scan is all 0: no brain): every metric undefined"
        reasons = []
        if self.scores is not None and self.scores.lesion_voxels == 0:
            lost = int(self.gt.sum()) if self.gt is not None else 0
            reasons.append(
                f"no lesion among the counted voxels ({lost} lesion voxels outside them): Dice, sensitivity undefined"
                if lost
                else "no lesion (empty ground truth): Dice, sensitivity undefined; counted in specificity"
            )
        if self.scores is not None and self.scores.predicted_voxels == 0:
            reasons.append("nothing predicted: PPV undefined")
        return "; ".join(reasons)


def oracle_threshold(score: np.ndarray, gt: np.ndarray) -> float:
    """The threshold on a 0.01 grid in [0, 1] with the best Dice of ``score > t`` against ``gt`` (first if tied)."""
    return DiceCurve().update(score, gt).best_threshold()


def counted_values(score: np.ndarray, gt: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(score[counted], gt[counted])``, paired voxel by voxel, in the memory order of ``score``.

    Any order of the voxels is fine for histograms; following the score's memory avoids strided gathers.
    """
    order = "F" if score.flags.f_contiguous and not score.flags.c_contiguous else "C"
    keep = counted.ravel(order=order)
    return score.ravel(order=order)[keep], gt.ravel(order=order)[keep]


def _slice_distance(brain: np.ndarray) -> np.ndarray:
    """Per axial slice, ``|z - brain centre| / brain half-height`` (centre and extent of the non-empty slices)."""
    zs = np.flatnonzero(brain.any(axis=(0, 1)))
    centre, half = (zs.mean(), max((zs.max() - zs.min()) / 2, 1)) if zs.size else (0.0, 1.0)
    return np.abs(np.arange(brain.shape[2]) - centre) / half


def postprocessed_score(
    maps: SliceMaps, image: Volume, settings: EvaluationSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1 and 2 of the module docstring: the fused, post-processed score map and the counted/brain masks.

    Returns:
        ``(score, counted, brain)``, canonical arrays; ``score`` is 0 outside the (eroded) brain with ``brain_only``
        or an erosion.
    """
    shape = image.data.shape
    planes = maps if maps and all(isinstance(key, str) for key in maps) else {"axial": maps}
    stacked = {plane: stack_slices(plane_maps, shape, plane) for plane, plane_maps in planes.items()}
    score = postprocess_volume(fuse_planes(stacked, settings.fusion), settings.smoothing_sigma)
    brain = brain_mask(image.data)
    counted = brain if settings.brain_only else np.ones(shape, bool, order="F")
    iterations = settings.erosion_iterations(shape[1::-1])  # served axial slices are (Y, X)
    support = erode_brain(brain, iterations) if iterations else counted
    if settings.median_kernel > 1:
        score = median_filter_at(score, support, settings.median_kernel, out=score)  # in place
    elif settings.brain_only or iterations:  # voxels outside do not count; written as 0 (also makes the file small)
        score *= support  # in place: no second volume-sized array
    return score, counted, brain


def finalise_volume(
    maps: SliceMaps,
    image: Volume,
    gt: np.ndarray | None,
    settings: EvaluationSettings,
    val_threshold: float | None = None,
) -> VolumeResult:
    """Stack, post-process, threshold and score one volume (see the module docstring).

    Args:
        maps: Slice anomaly maps by ``slice_index`` (axial), or such maps per plane name (``{"coronal": {...}}``),
            served orientation, any resolution, normalised to [0, 1].
        image: The source scan (canonical orientation); its intensities define the brain.
        gt: Canonical ground-truth mask of the same shape, or ``None`` for an unlabelled scan.
        settings: The evaluation options (a ``postprocess`` preset is applied here).
        val_threshold: The ``val_dice`` policy's threshold, found on the validation volumes.

    Returns:
        The :class:`VolumeResult`.

    Raises:
        ValueError: If ``gt`` and the image differ in shape, a slice index is outside the volume, or the
            ``val_dice`` policy has no validation threshold.
    """
    settings = settings.chain()
    shape = image.data.shape
    if gt is not None and gt.shape != shape:
        msg = f"Ground truth has shape {gt.shape} but the image {image.path} has {shape}; pass a mask on its grid."
        raise ValueError(msg)
    score, counted, brain = postprocessed_score(maps, image, settings)
    if settings.threshold_policy == "val_dice":
        if val_threshold is None:
            msg = (
                "threshold_policy='val_dice' needs the Dice-optimal threshold of the validation volumes, and none was "
                "found. It is learnt during validation: `anomalib train` (fit validates) or `anomalib test` of a "
                "zero-shot model without a checkpoint, and a checkpoint written after validation carries it (pass "
                "--ckpt_path). The validation split must hold volumes with lesions."
            )
            raise ValueError(msg)
        threshold = float(val_threshold)
    elif settings.threshold_policy == "oracle" and gt is not None:
        threshold = DiceCurve().update(*counted_values(score, gt, counted)).best_threshold()
    else:
        threshold = settings.base_threshold
    pred = remove_small_components((score > threshold) & counted, settings.min_component_voxels)
    result = VolumeResult(score=score, pred=pred, counted=counted, threshold=threshold, spacing=image.spacing)
    if gt is None:
        return result
    mean_2d, per_slice = dice_2d_mean(pred, gt, counted)
    return replace(
        result,
        gt=gt,
        scores=volume_scores(pred, gt, counted),
        dice_2d_mean=mean_2d,
        slice_dice=per_slice,
        slice_distance=_slice_distance(brain),
        hd95=hd95(pred & counted, gt & counted, image.spacing) if settings.hd95 else None,
    )


def read_ground_truth(mask_path: str | Path, image: Volume) -> np.ndarray:
    """Whole-tumour ground truth ``seg > 0`` of a segmentation file, canonical orientation, native resolution.

    Raises:
        ValueError: If the segmentation is not on the grid of ``image`` (the scan it belongs to).
    """
    gt = lesion_mask(read_label_map(mask_path).data)  # the package's one lesion rule
    if gt.shape != image.data.shape:
        msg = (
            f"Segmentation {mask_path} has canonical shape {gt.shape}, its image {image.path} has "
            f"{image.data.shape}; resample the segmentation onto the image's grid."
        )
        raise ValueError(msg)
    return gt
