# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Optional official BraTS lesion-wise metrics through the ``BraTS-evaluation`` package (Panoptica).

``BraTS-evaluation`` is AGPL-3.0, so it is never a dependency of this package nor vendored: when it is importable
(``pip install BraTS-evaluation``), :func:`write_brats_lesionwise` scores every written ``<volume_id>_pred_mask.nii.gz``
against its segmentation with the bundled ``mets`` configuration (whole tumour = labels {1, 2, 3}; the binary
prediction carries label 1, so only the whole-tumour region is meaningful) and writes one row per volume and region to
``brats_lesionwise.csv``. Without the package it does nothing (a debug log says so).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from anomalib_medclip.utils import write_atomic

__all__ = ["write_brats_lesionwise"]

logger = logging.getLogger(__name__)


def write_brats_lesionwise(folder: Path, volumes: Iterable[tuple[str, str]], config: str = "mets") -> Path | None:
    """Write ``folder/brats_lesionwise.csv`` for ``(volume_id, segmentation path)`` pairs, if the package is there.

    Args:
        folder: the ``volumes/`` output folder holding ``<volume_id>_pred_mask.nii.gz``.
        volumes: volume ids and their segmentation files.
        config: bundled Panoptica configuration of ``BraTS-evaluation``.

    Returns:
        The CSV path, or ``None`` when ``BraTS-evaluation`` is not installed.
    """
    try:
        brats_evaluation = importlib.import_module("brats_evaluation")
        panoptica = importlib.import_module("panoptica")
    except ImportError:
        logger.debug("BraTS-evaluation is not installed; skipping the official lesion-wise metrics.")
        return None
    evaluator = panoptica.Panoptica_Evaluator.load_from_config(str(brats_evaluation.config_path(config)))
    rows = []
    for volume_id, segmentation in volumes:
        prediction = str(folder / f"{volume_id}_pred_mask.nii.gz")
        result = brats_evaluation.evaluate_single_exam(prediction, str(segmentation), volume_id, evaluator)
        regions = {key: value for key, value in result.items() if isinstance(value, dict)}
        rows += [{"volume_id": volume_id, "region": name, **metrics} for name, metrics in regions.items()]
        if "error" in result:
            rows.append({"volume_id": volume_id, "error": result["error"]})
    path = folder / "brats_lesionwise.csv"
    return write_atomic(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
