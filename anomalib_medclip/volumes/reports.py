# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Everything the 3D evaluation writes, from finalised volumes; every file atomically, under one folder.

Per volume: ``<volume_id>_anomaly_map.nii.gz`` (float32) and ``<volume_id>_pred_mask.nii.gz`` (uint8) in the source
file's voxel order, affine, qform/sform codes and units; for a scan read from a DICOM series also
``<volume_id>_seg.dcm``, the mask as a DICOM-SEG referencing the series (:mod:`~anomalib_medclip.volumes.dicom_seg`);
for an unlabelled scan also ``<volume_id>.json`` (maximum slice score, predicted anomalous volume in ml, flagged
slices and, for DICOM, the series identity). At the end of a labelled run:
``metrics_per_volume.csv``, ``summary.json``, the study's plots and, when the optional package is there,
``brats_lesionwise.csv``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from anomalib_medclip.data.nifti import Volume, to_source_orientation
from anomalib_medclip.utils import claim_output_dir, write_atomic
from anomalib_medclip.volumes.brats_official import write_brats_lesionwise
from anomalib_medclip.volumes.dicom_seg import write_dicom_seg
from anomalib_medclip.volumes.finalise import VolumeResult
from anomalib_medclip.volumes.metrics import VoxelCurves
from anomalib_medclip.volumes.plots import write_plots
from anomalib_medclip.volumes.settings import EvaluationSettings
from anomalib_medclip.volumes.stacking import write_nifti

logger = logging.getLogger(__name__)

__all__ = ["CSV_COLUMNS", "HD95_DEFINITION", "NORMALISATION", "STATS", "VolumeReport"]

NORMALISATION = (
    "anomalib PostProcessor: min-max on the validation split, F1-adaptive threshold mapped to 0.5, clamped to [0, 1]"
)
HD95_DEFINITION = (
    "MONAI compute_hausdorff_distance, percentile 95, max of the two directed distances, mm; the BraTS evaluator "
    "pools both directions in voxel units, so values differ by design"
)
STATS = ("dice", "sensitivity", "specificity", "ppv", "dice_2d_mean")
CSV_COLUMNS = (
    "volume_id", "dice", "sensitivity", "specificity", "ppv", "lesion_voxels", "predicted_voxels", "dice_2d_mean",
    "threshold", "note",
)  # fmt: skip


def chain_description(settings: EvaluationSettings) -> list[str]:
    """The post-processing steps that apply, in order (an empty list: plain stacking)."""
    steps = [f"3D Gaussian smoothing, sigma {settings.smoothing_sigma} voxels"] if settings.smoothing_sigma else []
    if settings.brain_erosion not in (0, "0"):
        rule = " (slice height // 25)" if settings.brain_erosion == "auto" else ""
        steps.append(f"slice-wise brain-mask erosion, {settings.brain_erosion} iterations{rule}")
    if settings.median_kernel > 1:
        steps.append(f"3D median filter, kernel {settings.median_kernel}")
    if settings.threshold_policy == "val_dice":
        steps.append("threshold: best pooled Dice of the validation volumes (0.01 grid)")
    if settings.min_component_voxels:
        steps.append(f"remove 26-connected components under {settings.min_component_voxels} voxels")
    return steps


def _mean_std(values: pd.Series) -> dict[str, float | int]:
    """Mean and population std over the defined (non-NaN) values, and how many there were."""
    return {"mean": float(values.mean()), "std": float(values.std(ddof=0)), "n": int(values.notna().sum())}


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
    text = json.dumps(payload, indent=2, default=str)
    return write_atomic(path, lambda tmp: tmp.write_text(text))


class VolumeReport:
    """Writes the per-volume files as volumes are finalised, and keeps what the end-of-run tables need.

    The run's folder is claimed when the first file is written (a run without volumes creates none): ``base``, or
    ``base_v1``, ``base_v2``, ... when another run's outputs are there (``utils.claim_output_dir``).

    Args:
        base: Where the outputs go, normally ``<results>/volumes``.
        settings: The evaluation options (recorded in ``summary.json``; they decide the optional columns).
        model_name: The model's name, recorded in DICOM-SEG outputs. Defaults to ``"anomaly model"``.
    """

    def __init__(self, base: Path, settings: EvaluationSettings, model_name: str = "anomaly model") -> None:
        self.base = Path(base)
        self.model_name = model_name
        self._output: Path | None = None
        self.settings = settings
        self._rows: list[dict[str, Any]] = []
        self._slices: list[dict[str, Any]] = []
        self._curves = VoxelCurves(settings.curve_thresholds, sync_on_compute=False)  # one process sees every voxel

    @property
    def output(self) -> Path:
        """This run's own folder (claimed on first use; warned when it is not ``base``)."""
        if self._output is None:
            self._output = claim_output_dir(self.base)
            if self._output != self.base:
                logger.warning("%s holds another run's 3D outputs: this run writes to %s.", self.base, self._output)
        return self._output

    def write_maps(self, volume_id: str, image: Volume, result: VolumeResult) -> None:
        """``<volume_id>_anomaly_map.nii.gz``, ``_pred_mask.nii.gz`` (and DICOM-SEG ``_seg.dcm``) over the scan."""
        for kind, array in (("anomaly_map", result.score), ("pred_mask", result.pred.astype(np.uint8))):
            source_order = to_source_orientation(array, image.source_affine)
            write_nifti(self.output / f"{volume_id}_{kind}.nii.gz", source_order, image.source_affine, image.space)
        if image.series is not None:
            write_dicom_seg(self.output / f"{volume_id}_seg.dcm", result.pred, image, self.model_name, result.threshold)

    def add(self, volume_id: str, mask_path: str, result: VolumeResult) -> None:
        """Keep a labelled volume's table row, lesion-slice rows and voxels for the curves."""
        row = {"volume_id": volume_id, **result.metric_row(), "mask_path": mask_path}
        if not result.counted.any():
            logger.warning("Volume %s: %s (%s).", volume_id, row["note"], mask_path)
        self._rows.append(row)
        scores, labels = result.counted_voxels()
        self._curves.update(torch.from_numpy(scores), torch.from_numpy(labels))
        for z in np.flatnonzero(~np.isnan(result.slice_dice)):
            self._slices.append(
                {
                    "volume_id": volume_id,
                    "z": int(z),
                    "dice_2d": float(result.slice_dice[z]),
                    "distance": float(result.slice_distance[z]),
                }
            )

    def write_scan_report(
        self, volume_id: str, slice_scores: list[float], result: VolumeResult, series: dict[str, str] | None = None
    ) -> Path:
        """``<volume_id>.json`` for an unlabelled scan.

        ``slice_scores`` are those of every served slice, all planes; ``series`` is a DICOM scan's ``Volume.series``.
        """
        report = {
            "volume_id": volume_id,
            **({"series": series} if series is not None else {}),
            "max_slice_score": max(slice_scores) if slice_scores else None,
            "anomalous_volume_ml": result.predicted_ml,
            "slices_flagged": [int(z) for z in np.flatnonzero(result.pred.any(axis=(0, 1)))],
            "threshold": result.threshold,
            "normalisation": NORMALISATION,
        }
        return _write_json(self.output / f"{volume_id}.json", report)

    def table(self) -> pd.DataFrame:
        """Per-volume rows sorted by ``volume_id``: the same table whatever order (or process) finished them."""
        return pd.DataFrame(self._rows).sort_values("volume_id", kind="stable", ignore_index=True)

    def summary(
        self, model: dict[str, Any], data: dict[str, Any], val_threshold: float | None = None
    ) -> dict[str, Any] | None:
        """``summary.json``'s content, with the model's and datamodule's descriptions; ``None`` without volumes."""
        if not self._rows:
            return None
        table, settings = self.table(), self.settings.chain()
        threshold: float | str = settings.base_threshold
        if settings.threshold_policy == "oracle":
            threshold = "per volume (oracle upper bound)"
        elif settings.threshold_policy == "val_dice":
            threshold = val_threshold
        return {
            **{f"volume_{stat}": _mean_std(table[stat]) for stat in STATS},
            **{key: float(value) for key, value in self._curves.compute().items()},
            "threshold_policy": settings.threshold_policy,
            "threshold": threshold,
            "planes": list(data.get("planes", ["axial"])),
            "fusion": settings.fusion if len(data.get("planes", ["axial"])) > 1 else "none (one plane)",
            "channels": data.get("channels", "repeat"),
            "postprocess": self.settings.postprocess,
            "chain": chain_description(settings),
            "normalisation": NORMALISATION,
            "voxels_counted": "inside the brain (source intensity > 0)" if settings.brain_only else "all voxels",
            "empty_ground_truth": "excluded from Dice, counted in specificity",
            **({"hd95": HD95_DEFINITION} if settings.hd95 else {}),
            "settings": settings.as_dict(),
            "model": model,
            "data": data,
            "volumes": len(table),
            "volume_ids": table["volume_id"].tolist(),  # exactly the volumes of this folder
        }

    def write(self, summary: dict[str, Any]) -> None:
        """The end-of-run files: table, summary, plots and the optional official lesion-wise table."""
        table = self.table()
        columns = [*CSV_COLUMNS[:-1], *(["hd95"] if self.settings.hd95 else []), CSV_COLUMNS[-1]]
        write_atomic(self.output / "metrics_per_volume.csv", lambda tmp: table[columns].to_csv(tmp, index=False))
        _write_json(self.output / "summary.json", summary)
        write_plots(self.output, table, pd.DataFrame(self._slices))
        if self.settings.brats_official:
            write_brats_lesionwise(self.output, table[["volume_id", "mask_path"]].itertuples(index=False))
