# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Experiment grids: a study's models × setups × tasks × seeds, run with anomalib's Engine and pipeline runners.

``anomalib-medclip-grid run configs/brats_met/grid.yaml --seeds 0 1 2`` (or ``python -m
anomalib_medclip.experiments``) expands the grid (:class:`GridSpec`), runs every cell without a stored result
(:class:`GridJob`, through anomalib's ``SerialRunner``/``ParallelRunner``) and writes the study's table in its
paper's layout (:func:`write_tables`). See ``configs/README.md``.
"""

from anomalib_medclip.experiments.metrics import Accuracy
from anomalib_medclip.experiments.spec import Cell, GridSpec

__all__ = ["Accuracy", "Cell", "GridSpec"]
