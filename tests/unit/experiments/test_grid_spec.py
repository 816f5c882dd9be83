# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The grid runner without fits: each study's dry run lists the cells of its paper table; specs refuse bad names.

The grid fits are in ``tests/integration/experiments/test_grid.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from anomalib_medclip.experiments.cli import main
from anomalib_medclip.experiments.spec import GridSpec

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _dry_run_cells(capsys: pytest.CaptureFixture, grid: Path) -> list[list[str]]:
    capsys.readouterr()
    assert main(["run", str(grid), "--seeds", "0", "--dry-run", "--output", "/nonexistent/grid-results"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [line.split("\t") for line in lines[1:-1]]


def test_dry_run_lists_every_cell_of_the_cross_modal_table(capsys: pytest.CaptureFixture) -> None:
    rows = _dry_run_cells(capsys, CONFIGS / "cross_modal" / "grid.yaml")
    zero_shot = ["OCT2017", "Histopathology", "Liver", "Brain"]
    fine_tuned = ["Brain->Brain", "Histopathology->Histopathology", "Histopathology->Brain", "Brain->Liver"]
    expected = {
        f"{model}/{setup}/{task}/seed0"
        for model in ("CLIP", "MedCrossModalCLIP")
        for setup, tasks in (("zero-shot", zero_shot), ("fine-tuned", fine_tuned))
        for task in tasks
    }
    assert {row[0] for row in rows} == expected
    assert len(rows) == 16
    assert all(row[1] == "pending" for row in rows)
    assert all("ViT-L-14-336" in row[3] for row in rows)
    assert all("datasets/BMAD" in row[4] for row in rows)
    cross = next(row for row in rows if row[0] == "CLIP/fine-tuned/Histopathology->Brain/seed0")
    assert cross[4].startswith("train: ")
    assert " | test: " in cross[4]


def test_dry_run_lists_every_cell_of_the_brats_met_table(capsys: pytest.CaptureFixture) -> None:
    rows = _dry_run_cells(capsys, CONFIGS / "brats_met" / "grid.yaml")
    baselines = ("AdaCLIP", "AnoVL", "AnomalyCLIP", "VAND")
    expected = {f"{m}/{s}/BraTS-MET/seed0" for m in baselines for s in ("Industrial", "Finetune", "Brats", "PMC")}
    expected |= {f"MedCrossModalCLIP/{s}/BraTS-MET/seed0" for s in ("Brats", "PMC")}
    assert {row[0] for row in rows} == expected
    assert len(rows) == 18
    released = [row for row in rows if "/Industrial/" in row[0] or "/Finetune/" in row[0]]
    assert sum("official_checkpoint" in row[3] for row in released) == 6  # AnoVL has no released weights
    assert all("pmc_vit_l_14" in row[3] for row in rows if "/PMC/" in row[0])
    assert all("BraTS root datasets/BraTS-MET MISSING" in row[4] for row in rows)


def test_dry_run_lists_every_cell_of_the_mvfa_tables(capsys: pytest.CaptureFixture) -> None:
    rows = _dry_run_cells(capsys, CONFIGS / "bmad_mvfa" / "grid.yaml")
    models = ("VanillaCLIP", "MedCrossModalCLIP", "AnomalyCLIP", "AdaCLIP", "AprilGAN", "AnoVL", "MVFA")
    setups = ("zero-shot", "2-shot", "4-shot", "8-shot", "16-shot")
    categories = ("HIS", "ChestXray", "OCT17", "BrainMRI", "LiverCT", "RESC")
    expected = {f"{m}/{s}/{c}/seed0" for m in models for s in setups for c in categories}
    assert {row[0] for row in rows} == expected
    assert len(rows) == 210


def test_grid_spec_rejects_unknown_names(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONFIGS / "demo" / "grid.yaml").read_text())
    raw["setups"]["fitted"]["tasks"] = ["DemoBraTS->Nowhere"]
    with pytest.raises(ValueError, match="dataset 'Nowhere'"):
        GridSpec.from_dict(raw)
    assert math.isclose(
        GridSpec.from_dict(yaml.safe_load((CONFIGS / "demo" / "grid.yaml").read_text())).table["scale"], 100
    )
