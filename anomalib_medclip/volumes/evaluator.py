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

Under DDP rank 0 finalises the volumes it holds complete as they arrive; the other processes keep their slices until
epoch end, when they are gathered to rank 0 and finalised there. Rank 0 alone writes files; the summary is broadcast
so that each process logs the same values. Outputs and numbers equal a single-process run (tested with two CPU
processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from anomalib_medclip.data.nifti import read_volume
from anomalib_medclip.utils import describe
from anomalib_medclip.volumes.buffer import SliceBuffer
from anomalib_medclip.volumes.finalise import finalise_volume, read_ground_truth
from anomalib_medclip.volumes.reports import STATS, VolumeReport
from anomalib_medclip.volumes.settings import EvaluationSettings, ThresholdPolicy

__all__ = ["ThresholdPolicy", "VolumeEvaluator"]


class VolumeEvaluator(Callback):
    """Regroup slice predictions into volumes, evaluate them in 3D and write aligned NIfTI maps.

    Args:
        threshold_policy: ``"adaptive"`` (default: anomalib's validation F1-optimal threshold, 0.5 on normalised
            maps), ``"fixed"`` (``threshold``) or ``"oracle"`` (per volume, the Dice-optimal threshold on a 0.01
            grid: an upper bound, reported as such, never a deployable result).
        threshold: the value used by the ``fixed`` policy, on normalised maps, in [0, 1].
        brain_only: count only voxels inside the brain (source intensity > 0, ``data.nifti.brain_mask``).
        smoothing_sigma: 3D Gaussian sigma in voxels applied to the stacked map (0 = off).
        min_component_voxels: remove predicted components smaller than this (0 = off).
        curve_thresholds: bins of the voxel AUROC / F1-max curves (at least 2).
        hd95: also compute MONAI's 95th-percentile Hausdorff distance in mm per volume (slow on large volumes).
        brats_official: also write the whole-tumour rows of the optional ``BraTS-evaluation`` package (AGPL, not
            installed with this package) when it is importable; skipped silently otherwise.

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
        )
        self._buffer = SliceBuffer()
        self._report: VolumeReport | None = None

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

    # ------------------------------------------------------------------ Lightning hooks
    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """Reset, and learn how many slices each test volume has from the datamodule."""
        del pl_module
        self._start(trainer)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Reset, and learn how many slices each volume has from the datamodule."""
        del pl_module
        self._start(trainer)

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
            summary = self._report.summary(describe(pl_module), describe(getattr(trainer, "datamodule", None)))
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
    def _start(self, trainer: Any) -> None:
        # Rank 0 alone writes, into a folder of this run's own (the report claims volumes/, else volumes_v1/, ...:
        # anomalib reuses the training workspace for every later test/predict run, whose outputs must not mix).
        output = str(Path(trainer.default_root_dir) / "volumes")
        self._buffer = SliceBuffer()
        self._buffer.expect(getattr(getattr(getattr(trainer, "datamodule", None), "test_data", None), "samples", None))
        self._report = VolumeReport(Path(output), self._settings)

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
        result = finalise_volume(buffered.maps, image, gt, self._report.settings)
        self._report.write_maps(volume_id, image, result)
        if gt is None:
            self._report.write_scan_report(volume_id, buffered.scores, result)
        else:
            self._report.add(volume_id, mask_path, result)
