# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``VolumeEvaluator``: the Lightning callback that wires the 3D evaluation of ``anomalib test``/``predict``.

The models take it as a component (``volume_evaluator``) and return it from ``configure_callbacks()`` after
anomalib's own components, so it sees batches after the PostProcessor: anomaly maps are min-max normalised on the
validation split and the F1-adaptive pixel threshold sits at 0.5. Batches without ``volume_id`` (plain 2D data) are
ignored. The work is done by parts that each do one job:

- :class:`~anomalib_medclip.volumes.buffer.SliceBuffer`: buffers slices per volume, says when a volume is complete
  (the datamodule's slice counts), regroups volumes split between DDP processes on rank 0;
- :func:`~anomalib_medclip.volumes.finalise.finalise_volume`: stacks, post-processes, thresholds and scores one
  volume, on arrays;
- :class:`~anomalib_medclip.volumes.reports.VolumeReport`: writes the NIfTI maps, tables, ``summary.json``, plots
  and predict reports.

With ``threshold_policy='val_dice'`` (or the ``postprocess='uad'`` preset) the validation slices are buffered too;
at the end of validation (after anomalib's PostProcessor has learnt its normalisation) rank 0 normalises them the same
way, post-processes each validation volume with the chain and picks the threshold with the best Dice pooled over
their counted voxels (0.01 grid); it is broadcast to every process and kept in the callback's checkpoint state.

Under DDP rank 0 finalises the volumes it holds complete as they arrive; the other processes keep their slices until
epoch end, when they are gathered to rank 0 and finalised there. Rank 0 alone writes files; the summary is broadcast
so that each process logs the same values. Outputs and numbers equal a single-process run (tested with two CPU
processes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback

from anomalib_medclip.data.nifti import read_volume
from anomalib_medclip.utils import describe
from anomalib_medclip.volumes.buffer import BufferedVolume, SliceBuffer
from anomalib_medclip.volumes.finalise import (
    DiceCurve,
    counted_values,
    finalise_volume,
    postprocessed_score,
    read_ground_truth,
)
from anomalib_medclip.volumes.reports import STATS, VolumeReport
from anomalib_medclip.volumes.settings import EvaluationSettings, Fusion, Postprocess, ThresholdPolicy

logger = logging.getLogger(__name__)

__all__ = ["ThresholdPolicy", "VolumeEvaluator"]


class VolumeEvaluator(Callback):
    """Regroup slice predictions into volumes, evaluate them in 3D and write aligned NIfTI maps.

    Args:
        threshold_policy: ``"adaptive"`` (default: anomalib's validation F1-optimal threshold, 0.5 on normalised
            maps), ``"fixed"`` (``threshold``), ``"oracle"`` (per volume, the Dice-optimal threshold on a 0.01
            grid: an upper bound, reported as such, never a deployable result) or ``"val_dice"`` (the threshold with
            the best Dice pooled over the post-processed validation volumes, 0.01 grid: deployable).
        threshold: the value used by the ``fixed`` policy, on normalised maps, in [0, 1].
        brain_only: count only voxels inside the brain (source intensity > 0, ``data.nifti.brain_mask``).
        smoothing_sigma: 3D Gaussian sigma in voxels applied to the stacked map (0 = off).
        min_component_voxels: remove predicted components smaller than this (0 = off).
        curve_thresholds: bins of the voxel AUROC / F1-max curves (at least 2).
        hd95: also compute MONAI's 95th-percentile Hausdorff distance in mm per volume (slow on large volumes).
        brats_official: also write the whole-tumour rows of the optional ``BraTS-evaluation`` package (AGPL, not
            installed with this package) when it is importable; skipped silently otherwise.
        brain_erosion: iterations of the slice-wise brain-mask erosion (4-connected cross) before thresholding;
            ``"auto"`` = slice height // 25 (pDDPM's rule); 0 = off.
        median_kernel: 3D median filter kernel size (odd), at the counted voxels; 0 = off.
        postprocess: ``"none"`` (the options above as given) or ``"uad"``: the chain of the unsupervised brain-MRI
            literature (``settings.UAD_PRESET``: erosion ``auto``, median 5, ``val_dice``, components of <= 7 voxels
            removed).
        fusion: how the planes of tri-planar data are fused per voxel: ``"mean"`` or ``"max"``.

    Raises:
        ValueError: for an invalid option (the message names it).
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
        brain_erosion: int | str = 0,
        median_kernel: int = 0,
        postprocess: Postprocess = "none",
        fusion: Fusion = "mean",
    ) -> None:
        self._settings = EvaluationSettings(
            threshold_policy=threshold_policy,
            threshold=threshold,
            brain_only=brain_only,
            smoothing_sigma=smoothing_sigma,
            min_component_voxels=min_component_voxels,
            curve_thresholds=curve_thresholds,
            hd95=hd95,
            brats_official=brats_official,
            brain_erosion=brain_erosion,
            median_kernel=median_kernel,
            postprocess=postprocess,
            fusion=fusion,
        )
        self._buffer = SliceBuffer()
        self._report: VolumeReport | None = None
        self._val_buffer: SliceBuffer | None = None
        self.val_threshold: float | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-able ``dict``: ``VolumeEvaluator(**ev.settings)`` is the same setup."""
        return self._settings.as_dict()

    def configure(self, **settings: Any) -> None:
        """Validate and replace some or all options in place (e.g. a checkpoint's stored choice).

        Takes effect from the next ``test``/``predict`` start. Nothing changes when a value is invalid.

        Raises:
            ValueError: naming the unknown option or the invalid value.
        """
        self._settings = self._settings.replace(**settings)

    def state_dict(self) -> dict[str, Any]:
        """The ``val_dice`` threshold learnt on validation, kept in checkpoints."""
        return {"val_threshold": self.val_threshold}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the ``val_dice`` threshold of a checkpoint."""
        self.val_threshold = state_dict.get("val_threshold", self.val_threshold)

    # ------------------------------------------------------------------ Lightning hooks
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """With the ``val_dice`` policy, start buffering the validation volumes."""
        del trainer, pl_module
        self._val_buffer = SliceBuffer() if self._settings.chain().threshold_policy == "val_dice" else None

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        """Buffer the raw validation slices (``val_dice`` policy only)."""
        del trainer, pl_module, args
        if self._val_buffer is not None:
            self._val_buffer.add(outputs if outputs is not None else batch)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """``val_dice``: the Dice-optimal threshold of the post-processed validation volumes (rank 0, broadcast)."""
        if self._val_buffer is None or getattr(trainer, "sanity_checking", False):
            return
        if trainer.world_size > 1:
            self._val_buffer.gather_to_rank_zero()
        threshold = None
        if trainer.is_global_zero:
            threshold = self._val_dice_threshold(getattr(pl_module, "post_processor", None))
        if trainer.world_size > 1:
            threshold = trainer.strategy.broadcast(threshold, src=0)
        self._val_buffer = None
        if threshold is not None:
            self.val_threshold = threshold
            pl_module.log("val_dice_threshold", threshold, sync_dist=True)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """Reset, and learn how many slices each test volume has from the datamodule."""
        self._start(trainer, pl_module)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Reset, and learn how many slices each volume has from the datamodule."""
        self._start(trainer, pl_module)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        """Buffer the batch's slices; finalise every volume that is complete (rank 0)."""
        del pl_module, outputs, args
        self._collect(trainer, batch, labelled=True)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        """Buffer the batch's slices; finalise every volume that is complete (rank 0)."""
        del pl_module, outputs, args
        self._collect(trainer, batch, labelled=False)

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Finalise what is left, write the tables and plots (rank 0), log the summary (every rank)."""
        self._finalise_rest(trainer, labelled=True)
        summary = None
        if trainer.is_global_zero:
            data = describe(getattr(trainer, "datamodule", None))
            summary = self._report.summary(describe(pl_module), data, self.val_threshold)
        if trainer.world_size > 1:
            summary = trainer.strategy.broadcast(summary, src=0)
        if summary is None:
            return
        if trainer.is_global_zero:
            self._report.write(summary)
        # every process holds the broadcast values: averaging them across processes keeps them (and is what
        # Lightning expects of epoch-level logging under DDP)
        for stat in STATS:
            pl_module.log(f"volume3d_{stat}", summary[f"volume_{stat}"]["mean"], sync_dist=True)
        for key in ("voxel_auroc", "voxel_f1_max"):
            pl_module.log(key, summary[key], sync_dist=True)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Finalise what is left."""
        del pl_module
        self._finalise_rest(trainer, labelled=False)

    # ------------------------------------------------------------------ wiring
    def _start(self, trainer: Any, pl_module: Any) -> None:
        # Rank 0 alone writes, into a folder of this run's own (the report claims volumes/, else volumes_v1/, ...:
        # anomalib reuses the training workspace for every later test/predict run, whose outputs must not mix).
        output = str(Path(trainer.default_root_dir) / "volumes")
        self._buffer = SliceBuffer()
        self._buffer.expect(getattr(getattr(getattr(trainer, "datamodule", None), "test_data", None), "samples", None))
        self._report = VolumeReport(Path(output), self._settings, model_name=type(pl_module).__name__)

    def _val_dice_threshold(self, post_processor: Any) -> float | None:
        """Normalise, post-process and pool the validation volumes with lesions into one Dice curve."""
        curve, settings = DiceCurve(), self._settings.chain()
        for volume_id in self._val_buffer.pending():
            buffered = self._val_buffer.pop(volume_id)
            if not buffered.mask_path:
                continue
            image = read_volume(buffered.image_path)
            gt = read_ground_truth(buffered.mask_path, image)
            score, counted, _ = postprocessed_score(_normalised(buffered, post_processor), image, settings)
            curve.update(*counted_values(score, gt, counted))
        if curve.lesion == 0:
            logger.warning("threshold_policy='val_dice': the validation volumes hold no lesion; no threshold found.")
            return None
        return curve.best_threshold()

    def _collect(self, trainer: Any, batch: Any, labelled: bool) -> None:
        for volume_id in self._buffer.add(batch):
            if trainer.is_global_zero:
                self._finalise(volume_id, labelled)

    def _finalise_rest(self, trainer: Any, labelled: bool) -> None:
        """Finalise the incomplete volumes on rank 0, after gathering every process's slices of them there."""
        if trainer.world_size > 1:
            self._buffer.gather_to_rank_zero()
        if trainer.is_global_zero:
            for volume_id in self._buffer.pending():
                self._finalise(volume_id, labelled)

    def _finalise(self, volume_id: str, labelled: bool) -> None:
        """Read one volume's scan (and ground truth), finalise it on arrays, write and record it (rank 0 only)."""
        buffered = self._buffer.pop(volume_id)
        image = read_volume(buffered.image_path)
        mask_path = buffered.mask_path if labelled else None
        gt = read_ground_truth(mask_path, image) if mask_path else None
        result = finalise_volume(buffered.by_plane(), image, gt, self._report.settings, self.val_threshold)
        self._report.write_maps(volume_id, image, result)
        if gt is None:
            self._report.write_scan_report(volume_id, buffered.all_scores(), result, image.series)
        else:
            self._report.add(volume_id, mask_path, result)


def _normalised(buffered: BufferedVolume, post_processor: Any) -> dict[str, dict[int, np.ndarray]]:
    """A validation volume's raw maps per plane, normalised as anomalib's PostProcessor does at test time."""
    planes = buffered.by_plane()
    if post_processor is None or not getattr(post_processor, "enable_normalization", True):
        return planes
    normalised = {}
    for plane, maps in planes.items():
        keys = sorted(maps)
        batch = SimpleNamespace(
            anomaly_map=torch.from_numpy(np.stack([maps[k] for k in keys]).astype(np.float32)),
            pred_score=torch.zeros(len(keys)),
        )
        post_processor.normalize_batch(batch)
        normalised[plane] = dict(zip(keys, batch.anomaly_map.cpu().numpy(), strict=True))
    return normalised
