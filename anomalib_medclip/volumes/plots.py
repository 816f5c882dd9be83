# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The BraTS study's analyses as PNG plots, written atomically.

- ``dice_2d_vs_3d.png``: per subject, a boxplot of the 2D Dice of its lesion slices with its 3D Dice marked (Fig. 2);
- ``dice_vs_distance.png``: mean 2D Dice of lesion slices against the normalised axial distance from the brain centre
  (0 = centre, 1 = the brain's top or bottom slice), with the number of lesion slices per bin (Fig. 3);
- ``lesion_size_vs_dice.png``: lesion volume (ml) against 3D Dice with Spearman's rank correlation (Table 3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from anomalib_medclip.utils import write_atomic

__all__ = ["write_plots"]


def _save(fig: Figure, path: Path) -> None:
    """Figures are made without pyplot, so the process's matplotlib backend (e.g. a notebook's) is left alone."""
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))


def _dice_2d_vs_3d(volumes: pd.DataFrame, slices: pd.DataFrame, path: Path) -> None:
    ids = [v for v in volumes.volume_id if v in set(slices.volume_id)]
    fig = Figure(figsize=(max(4, 0.5 * len(ids)), 3.5))
    ax = fig.subplots()
    if ids:
        ax.boxplot([slices.loc[slices.volume_id == v, "dice_2d"] for v in ids], showfliers=False)
        dice_3d = volumes.set_index("volume_id").loc[ids, "dice"]
        ax.scatter(range(1, len(ids) + 1), dice_3d, marker="*", s=80, color="crimson", label="3D Dice", zorder=3)
        ax.set_xticks(range(1, len(ids) + 1), ids, rotation=90, fontsize=7)
        ax.legend()
    ax.set_ylabel("Dice")
    ax.set_title("2D slice Dice per subject, 3D Dice marked")
    _save(fig, path)


def _dice_vs_distance(slices: pd.DataFrame, path: Path, bins: int = 10) -> None:
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    if not slices.empty:
        edges = np.linspace(0, 1, bins + 1)
        which = np.clip(np.digitize(slices.distance, edges) - 1, 0, bins - 1)
        grouped = slices.assign(bin=which).groupby("bin").dice_2d.agg(["mean", "size"])
        centres = (edges[:-1] + edges[1:])[grouped.index] / 2
        ax.plot(centres, grouped["mean"], marker="o")
        for x, (mean, size) in zip(centres, grouped.itertuples(index=False), strict=True):
            ax.annotate(str(size), (x, mean), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("normalised distance from the brain centre")
    ax.set_ylabel("mean 2D Dice (n lesion slices)")
    _save(fig, path)


def _size_vs_dice(volumes: pd.DataFrame, path: Path) -> None:
    data = volumes.dropna(subset=["dice"])
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.scatter(data.lesion_ml, data.dice)
    rho = spearmanr(data.lesion_ml, data.dice).statistic if len(data) > 2 else float("nan")
    ax.set_title(f"Spearman rho = {rho:.3f} (n = {len(data)})")
    ax.set_xlabel("lesion volume (ml)")
    ax.set_ylabel("3D Dice")
    _save(fig, path)


def write_plots(folder: Path, volumes: pd.DataFrame, slices: pd.DataFrame) -> None:
    """Write the three plots from the per-volume table and the per-lesion-slice table."""
    slices = slices if not slices.empty else pd.DataFrame(columns=["volume_id", "z", "dice_2d", "distance"])
    _dice_2d_vs_3d(volumes, slices, folder / "dice_2d_vs_3d.png")
    _dice_vs_distance(slices, folder / "dice_vs_distance.png")
    _size_vs_dice(volumes, folder / "lesion_size_vs_dice.png")
