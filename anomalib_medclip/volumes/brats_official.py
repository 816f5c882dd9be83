# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Optional official BraTS lesion-wise metrics through the ``BraTS-evaluation`` package (Panoptica).

``BraTS-evaluation`` is AGPL-3.0, so it is never a dependency of this package nor vendored: when it is importable
(``pip install BraTS-evaluation``), :func:`write_brats_lesionwise` scores every written ``<volume_id>_pred_mask.nii.gz``
against its segmentation with the bundled ``mets`` configuration and writes one row per volume to
``brats_lesionwise.csv``: the whole-tumour region only (``wt``, labels {1, 2, 3}). The prediction is a binary mask
(label 1), which the evaluator would also score as enhancing tumour (``et``), tumour core (``tc``) and resection
cavity (``rc``) against those labels of the reference: such rows are meaningless and left out. A volume the package
cannot evaluate gets a row with its ``error``. Without the package it does nothing (a debug log says so).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from anomalib_medclip.utils import write_atomic

__all__ = ["WHOLE_TUMOUR", "write_brats_lesionwise"]

logger = logging.getLogger(__name__)
WHOLE_TUMOUR = "wt"  # region name of the whole tumour in BraTS-evaluation's bundled configurations


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
        if isinstance(result.get(WHOLE_TUMOUR), dict):
            rows.append({"volume_id": volume_id, "region": WHOLE_TUMOUR, **result[WHOLE_TUMOUR]})
        if "error" in result:
            rows.append({"volume_id": volume_id, "error": result["error"]})
    path = folder / "brats_lesionwise.csv"
    return write_atomic(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
