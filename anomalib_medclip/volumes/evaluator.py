# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``VolumeEvaluator``: 3D stacking, volumetric metrics, NIfTI/CSV/JSON/plot outputs of ``anomalib test``/``predict``.

The models return this callback from ``configure_callbacks()`` after anomalib's own components, so it sees batches
after the PostProcessor: anomaly maps are min-max normalised on the validation split and the F1-adaptive pixel
threshold sits at 0.5. Batches without ``volume_id`` (plain 2D data) are ignored.

Per volume, slices are buffered (float16, model resolution) and the volume is finalised as soon as all the slices the
datamodule serves for it have arrived (memory stays bounded by the volumes in flight), else at epoch end:

- stacked by ``slice_index``, resized to the native grid, optional 3D smoothing (``smoothing_sigma`` voxels);
- thresholded by the policy — ``adaptive`` (default: anomalib's validation F1-optimal threshold, 0.5 on normalised
  maps), ``fixed`` (``threshold``), or ``oracle`` (per volume, the Dice-optimal threshold on a 0.01 grid; reported as
  such, an upper bound, never a deployable result) — then optional removal of components under
  ``min_component_voxels``;
- scored inside the brain (source image > 0) unless ``brain_only=False``; an empty-ground-truth volume is excluded
  from Dice and counted in specificity;
- written under ``<results>/volumes/``: ``<volume_id>_anomaly_map.nii.gz`` (float32) and
  ``<volume_id>_pred_mask.nii.gz`` (uint8) with the source file's shape and affine.

Under DDP (``--trainer.strategy ddp``) the slices of one volume may be served by several processes. Rank 0
finalises the volumes it holds complete as above; every other process keeps its slices until epoch end, when they
are gathered volume by volume to rank 0, merged by ``slice_index`` (a slice served twice counts once) and finalised
there. Rank 0 alone writes every file; the summary is broadcast so that each process logs the same values. Outputs
and numbers equal a single-process run (tested with two CPU processes).

At test end: ``metrics_per_volume.csv``, ``summary.json`` (mean ± std, voxel AUROC/F1-max, threshold policy,
normalisation, brain-mask choice, model and data identity), the BraTS study's plots, and the summary logged through
``pl_module.log`` so it joins anomalib's results table. At predict end (no ground truth): ``<volume_id>.json`` with
the maximum slice score, the predicted anomalous volume in ml and the flagged slices.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from lightning.pytorch import Callback

from anomalib_medclip.data.nifti import Volume, read_volume, to_source_orientation
from anomalib_medclip.utils import write_atomic
from anomalib_medclip.volumes.brats_official import write_brats_lesionwise
from anomalib_medclip.volumes.metrics import VoxelCurves, dice_2d_mean, hd95, volume_scores
from anomalib_medclip.volumes.plots import write_plots
from anomalib_medclip.volumes.stacking import (
    postprocess_volume,
    remove_small_components,
    stack_slices,
    write_nifti,
)

__all__ = ["ThresholdPolicy", "VolumeEvaluator"]

logger = logging.getLogger(__name__)
ThresholdPolicy = Literal["adaptive", "fixed", "oracle"]
NORMALISATION = (
    "anomalib PostProcessor: min-max on the validation split, F1-adaptive threshold mapped to 0.5, clamped to [0, 1]"
)
_STATS = ("dice", "sensitivity", "specificity", "ppv", "dice_2d_mean")
CSV_COLUMNS = (
    "volume_id", "dice", "sensitivity", "specificity", "ppv", "lesion_voxels", "predicted_voxels", "dice_2d_mean",
)  # fmt: skip


def _mean_std(values: pd.Series) -> dict[str, float | int]:
    """Mean and population std over the defined (non-NaN) values, and how many there were."""
    return {"mean": float(values.mean()), "std": float(values.std(ddof=0)), "n": int(values.notna().sum())}


_COMPONENTS = frozenset({"pre_processor", "post_processor", "evaluator", "visualizer"})
_DATA_FIELDS = ("category", "modality", "ratios", "seed", "slices", "eval_slices", "z_range")


def _jsonable(value: object) -> object:
    """A JSON value for a setting: scalars and ``None`` as they are, enums by value, sequences and dicts as such."""
    if isinstance(value, Enum):  # e.g. anomalib's LearningType
        return _jsonable(value.value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    return str(value)


class VolumeEvaluator(Callback):
    """Regroup slice predictions into volumes, evaluate them in 3D and write aligned NIfTI maps.

    Args:
        threshold_policy: ``"adaptive"`` (default), ``"fixed"`` or ``"oracle"`` (see the module docstring).
        threshold: the value used by the ``fixed`` policy, on normalised maps.
        brain_only: count only voxels inside the brain (source image > 0).
        smoothing_sigma: 3D Gaussian sigma in voxels applied to the stacked map (0 = off).
        min_component_voxels: remove predicted components smaller than this (0 = off).
        curve_thresholds: bins of the voxel AUROC / F1-max curves.
        hd95: also compute MONAI's 95th-percentile Hausdorff distance in mm per volume (slow on large volumes).
        brats_official: also write the lesion-wise table of the optional ``BraTS-evaluation`` package (AGPL, not
            installed with this package) when it is importable; skipped silently otherwise.
    """

    def __init__(
        self,
        threshold_policy: ThresholdPolicy = "adaptive",
        threshold: float = 0.5,
        brain_only: bool = True,
        smoothing_sigma: float = 0.0,
        min_component_voxels: int = 0,
        curve_thresholds: int = 1000,
        hd95: bool = False,
        brats_official: bool = True,
    ) -> None:
        if threshold_policy not in {"adaptive", "fixed", "oracle"}:
            msg = f"threshold_policy='{threshold_policy}'; expected 'adaptive', 'fixed' or 'oracle'."
            raise ValueError(msg)
        self.threshold_policy = threshold_policy
        self.threshold = threshold if threshold_policy == "fixed" else 0.5
        self.brain_only = brain_only
        self.smoothing_sigma = smoothing_sigma
        self.min_component_voxels = min_component_voxels
        self.curve_thresholds = curve_thresholds
        self.hd95 = hd95
        self.brats_official = brats_official
        self._reset()

    @property
    def settings(self) -> dict[str, Any]:
        """TEMPORARY shim (replaced by the volumes branch)."""
        return {k: getattr(self, k) for k in ("threshold_policy", "threshold", "brain_only", "smoothing_sigma",
                "min_component_voxels", "curve_thresholds", "hd95", "brats_official")}

    def configure(self, **settings: Any) -> None:
        """TEMPORARY shim (replaced by the volumes branch)."""
        self.__init__(**{**self.settings, **settings})

    def _reset(self) -> None:
        self._maps: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
        self._scores: dict[str, dict[int, float]] = defaultdict(dict)
        self._paths: dict[str, tuple[str, str | None]] = {}
        self._expected: dict[str, int] = {}
        self._done: set[str] = set()
        self._rows: list[dict[str, Any]] = []
        self._slices: list[dict[str, Any]] = []
        self._curves = VoxelCurves(self.curve_thresholds, sync_on_compute=False)  # rank 0 sees every voxel
        self._output: Path | None = None

    # ------------------------------------------------------------------ Lightning hooks
    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """Reset, and learn how many slices each test volume has from the datamodule."""
        self._start(trainer, "test_data")

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Reset, and learn how many slices each volume has from the datamodule."""
        self._start(trainer, "test_data")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        """Buffer the batch's slices; finalise every volume that is complete."""
        self._collect(trainer, batch, labelled=True)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        """Buffer the batch's slices; finalise every volume that is complete."""
        self._collect(trainer, batch, labelled=False)

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Finalise what is left, write the tables and plots (rank 0), log the summary (every rank)."""
        self._finalise_rest(trainer, labelled=True)
        summary = self._summary(trainer, pl_module) if trainer.is_global_zero and self._rows else None
        if trainer.world_size > 1:
            summary = trainer.strategy.broadcast(summary, src=0)
        if summary is None:
            return
        if trainer.is_global_zero:
            self._write_reports(summary)
        # every process holds the broadcast values: averaging them across processes keeps them (and is what
        # Lightning expects of epoch-level logging under DDP)
        for stat in _STATS:
            pl_module.log(f"volume3d_{stat}", summary[f"volume_{stat}"]["mean"], sync_dist=True)
        for key in ("voxel_auroc", "voxel_f1_max"):
            pl_module.log(key, summary[key], sync_dist=True)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Finalise what is left."""
        self._finalise_rest(trainer, labelled=False)

    # ------------------------------------------------------------------ internals
    def _start(self, trainer: Any, split: str) -> None:
        self._reset()
        output = str(Path(trainer.default_root_dir) / "volumes")
        # anomalib's versioned workspace is created per process (rank 1 may get v1 while rank 0 has v0): use rank 0's
        self._output = Path(trainer.strategy.broadcast(output, src=0) if trainer.world_size > 1 else output)
        samples = getattr(getattr(getattr(trainer, "datamodule", None), split, None), "samples", None)
        if samples is not None and "volume_id" in samples:
            self._expected = samples.groupby("volume_id").size().to_dict()

    def _collect(self, trainer: Any, batch: Any, labelled: bool) -> None:
        if getattr(batch, "volume_id", None) is None or batch.anomaly_map is None:
            return
        maps = batch.anomaly_map.detach().float().cpu().reshape(len(batch.volume_id), *batch.anomaly_map.shape[-2:])
        scores = batch.pred_score.detach().float().cpu() if batch.pred_score is not None else None
        for index, volume_id in enumerate(batch.volume_id):
            if volume_id in self._done:  # a repeated slice (padding of a DistributedSampler) of a finished volume
                continue
            z = int(batch.slice_index[index])
            self._maps[volume_id][z] = maps[index].numpy().astype(np.float16)
            if scores is not None:
                self._scores[volume_id][z] = float(scores[index])
            self._paths[volume_id] = (batch.image_path[index], batch.mask_path[index] if batch.mask_path else None)
            if trainer.is_global_zero and len(self._maps[volume_id]) == self._expected.get(volume_id, -1):
                self._finalise(volume_id, labelled)

    def _finalise_rest(self, trainer: Any, labelled: bool) -> None:
        """Finalise the incomplete volumes on rank 0, after gathering every process's slices of them there."""
        if trainer.world_size > 1:
            self._gather_to_rank_zero()
        if trainer.is_global_zero:
            for volume_id in sorted(self._maps):
                self._finalise(volume_id, labelled)

    def _gather_to_rank_zero(self) -> None:
        """Move every process's buffered slices to rank 0, one volume at a time (bounded transfer size).

        Lightning's ``strategy.all_gather`` needs equal tensor shapes on every process and would copy each volume to
        all of them; the slices of a volume differ in number per process, so ``torch.distributed.gather_object``
        sends them to rank 0 only.
        """
        held: list[list[str]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(held, sorted(self._maps))
        for volume_id in sorted(set().union(*held)):  # the same sequence of collectives on every process
            local = (self._maps.pop(volume_id, {}), self._scores.pop(volume_id, {}), self._paths.pop(volume_id, None))
            parts: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
            dist.gather_object(local, parts, dst=0)
            if volume_id in self._done:  # rank 0 finished it already: what arrived are repeated slices
                continue
            for maps, scores, paths in parts or []:
                self._maps[volume_id].update(maps)
                self._scores[volume_id].update(scores)
                if paths is not None:
                    self._paths[volume_id] = paths

    def _volume_threshold(self, score: np.ndarray, gt: np.ndarray, counted: np.ndarray) -> float:
        if self.threshold_policy != "oracle":
            return self.threshold
        values, truth = score[counted], gt[counted]
        grid = np.linspace(0.0, 1.0, 101)
        dice = [2 * (truth & (values > t)).sum() / max(truth.sum() + (values > t).sum(), 1) for t in grid]
        return float(grid[int(np.argmax(dice))])

    def _finalise(self, volume_id: str, labelled: bool) -> None:
        """Stack, post-process, write and score one volume (rank 0 only)."""
        self._done.add(volume_id)
        image_path, mask_path = self._paths.pop(volume_id)
        maps, scores = self._maps.pop(volume_id), self._scores.pop(volume_id, {})
        volume = read_volume(image_path)
        score = postprocess_volume(stack_slices(maps, volume.data.shape), self.smoothing_sigma)
        counted = volume.data > 0 if self.brain_only else np.ones(volume.data.shape, bool)
        if self.brain_only:  # voxels outside the brain do not count; written as 0 (also makes the file small)
            score = np.where(counted, score, np.float32(0))
        gt = read_volume(mask_path, dtype=np.int32).data > 0 if labelled and mask_path else None
        if gt is not None and gt.shape != score.shape:
            msg = f"Segmentation {mask_path} has shape {gt.shape}, its image {image_path} has {score.shape}."
            raise ValueError(msg)
        threshold = self._volume_threshold(score, gt, counted) if gt is not None else self.threshold
        pred = remove_small_components((score > threshold) & counted, self.min_component_voxels)
        out = self._output
        write_nifti(
            out / f"{volume_id}_anomaly_map.nii.gz",
            to_source_orientation(score, volume.source_affine),
            volume.source_affine,
        )
        mask = to_source_orientation(pred.astype(np.uint8), volume.source_affine)
        write_nifti(out / f"{volume_id}_pred_mask.nii.gz", mask, volume.source_affine)
        if gt is None:
            self._write_scan_report(volume_id, scores, pred, volume.spacing)
            return
        self._record(volume_id, mask_path, volume, score, (pred, gt, counted), threshold)

    def _record(
        self,
        volume_id: str,
        mask_path: str,
        volume: Volume,
        score: np.ndarray,
        masks: tuple[np.ndarray, np.ndarray, np.ndarray],
        threshold: float,
    ) -> None:
        """Score one volume (``masks`` = prediction, ground truth, counted voxels) and keep its table rows."""
        (pred, gt, counted), spacing = masks, volume.spacing
        scores = volume_scores(pred, gt, counted)
        mean_2d, per_slice = dice_2d_mean(pred, gt, counted)
        self._curves.update(torch.from_numpy(score[counted]), torch.from_numpy(gt[counted]))
        self._rows.append(
            {
                "volume_id": volume_id,
                "dice": scores.dice,
                "sensitivity": scores.sensitivity,
                "specificity": scores.specificity,
                "ppv": scores.ppv,
                "lesion_voxels": scores.lesion_voxels,
                "predicted_voxels": scores.predicted_voxels,
                "dice_2d_mean": mean_2d,
                "threshold": threshold,
                **({"hd95": hd95(pred & counted, gt & counted, spacing)} if self.hd95 else {}),
                "lesion_ml": scores.lesion_voxels * float(np.prod(spacing)) / 1000.0,
                "mask_path": mask_path,
            }
        )
        zs = np.flatnonzero((volume.data > 0).any(axis=(0, 1)))
        centre, half = (zs.mean(), max((zs.max() - zs.min()) / 2, 1)) if zs.size else (0.0, 1.0)
        for z in np.flatnonzero(~np.isnan(per_slice)):
            self._slices.append(
                {
                    "volume_id": volume_id,
                    "z": int(z),
                    "dice_2d": float(per_slice[z]),
                    "distance": abs(z - centre) / half,
                }
            )

    def _table(self) -> pd.DataFrame:
        """Per-volume rows sorted by ``volume_id``: the same table whatever order (or process) finished them."""
        return pd.DataFrame(self._rows).sort_values("volume_id", kind="stable", ignore_index=True)

    def _summary(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        table = self._table()
        datamodule = getattr(trainer, "datamodule", None)
        hparams = dict(getattr(pl_module, "hparams", {}))
        return {
            **{f"volume_{s}": _mean_std(table[s]) for s in _STATS},
            **{key: float(value) for key, value in self._curves.compute().items()},
            "threshold_policy": self.threshold_policy,
            "threshold": self.threshold if self.threshold_policy != "oracle" else "per volume (oracle upper bound)",
            "normalisation": NORMALISATION,
            "voxels_counted": "inside the brain (source image > 0)" if self.brain_only else "all voxels",
            "empty_ground_truth": "excluded from Dice, counted in specificity",
            "postprocessing": {
                "smoothing_sigma": self.smoothing_sigma,
                "min_component_voxels": self.min_component_voxels,
            },
            "model": {  # what was trained how: the protocol behind the numbers
                "class": type(pl_module).__name__,
                "learning_type": _jsonable(getattr(pl_module, "learning_type", None)),
                **{k: _jsonable(v) for k, v in hparams.items() if k not in _COMPONENTS},
            },
            "data": {
                "class": type(datamodule).__name__,
                "root": str(Path(root).resolve()) if (root := getattr(datamodule, "root", None)) else "",
                **{k: _jsonable(getattr(datamodule, k)) for k in _DATA_FIELDS if hasattr(datamodule, k)},
            },
            "volumes": len(table),
        }

    def _write_reports(self, summary: dict[str, Any]) -> None:
        out = self._output
        table = self._table()
        columns = [*CSV_COLUMNS, "threshold", *(["hd95"] if self.hd95 else [])]
        write_atomic(out / "metrics_per_volume.csv", lambda tmp: table[columns].to_csv(tmp, index=False))
        text = json.dumps(summary, indent=2, default=str)
        write_atomic(out / "summary.json", lambda tmp: tmp.write_text(text))
        write_plots(out, table, pd.DataFrame(self._slices))
        if self.brats_official:
            write_brats_lesionwise(out, table[["volume_id", "mask_path"]].itertuples(index=False))

    def _write_scan_report(self, volume_id: str, scores: dict[int, float], pred: np.ndarray, spacing: tuple) -> None:
        report = {
            "volume_id": volume_id,
            "max_slice_score": max(scores.values()) if scores else None,
            "anomalous_volume_ml": float(pred.sum() * np.prod(spacing) / 1000.0),
            "slices_flagged": [int(z) for z in np.flatnonzero(pred.any(axis=(0, 1)))],
            "threshold": self.threshold,
            "normalisation": NORMALISATION,
        }
        write_atomic(self._output / f"{volume_id}.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
