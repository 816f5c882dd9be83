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
    variants = ("axial+default", "axial+uad", "tri-planar+default", "tri-planar+uad")  # the axes planes x chain
    setups = [(m, s) for m in baselines for s in ("Industrial", "Finetune", "Brats", "PMC", "BiomedCLIP")]
    setups += [("MedCrossModalCLIP", s) for s in ("Brats", "PMC", "BiomedCLIP")]
    setups += [("AACLIP", s) for s in ("Industrial", "Brats", "BiomedCLIP")]
    expected = {f"{m}/{s}/BraTS-MET/{v}/seed0" for m, s in setups for v in variants}
    assert {row[0] for row in rows} == expected
    assert len(rows) == 26 * 4
    released = [row for row in rows if "/Industrial/" in row[0] or "/Finetune/" in row[0]]
    assert sum("official_checkpoint" in row[3] for row in released) == 7 * 4  # AnoVL has no released weights
    spec = GridSpec.from_file(CONFIGS / "brats_met" / "grid.yaml")
    cells = {cell.id: cell for cell in spec.cells(seeds=[0])}
    plain, both = cells["VAND/Brats/BraTS-MET/axial+default/seed0"], cells["VAND/Brats/BraTS-MET/tri-planar+uad/seed0"]
    assert "planes" not in plain.test_data["init_args"]
    assert "volume_evaluator" not in plain.model_config["init_args"]
    assert both.test_data["init_args"]["planes"] == ["axial", "coronal", "sagittal"]
    assert both.model_config["init_args"]["volume_evaluator"] == {"postprocess": "uad"}
    assert both.coordinates == {"model": "VAND", "setup": "Brats", "task": "BraTS-MET", "planes": "tri-planar",
                                "chain": "uad"}  # fmt: skip
    assert spec.table["rows"] == ["model", "setup", "planes", "chain"]
    assert all("pmc_vit_l_14" in row[3] for row in rows if "/PMC/" in row[0])
    biomed = [row for row in rows if "/BiomedCLIP/" in row[0]]
    assert len(biomed) == 6 * 4
    assert all("BiomedCLIP-PubMedBERT_256-vit_base_patch16_224" in row[3] for row in biomed)
    assert all("BraTS root datasets/BraTS-MET MISSING" in row[4] for row in rows)


def test_dry_run_lists_every_cell_of_the_mvfa_tables(capsys: pytest.CaptureFixture) -> None:
    rows = _dry_run_cells(capsys, CONFIGS / "bmad_mvfa" / "grid.yaml")
    models = ("VanillaCLIP", "MedCrossModalCLIP", "AnomalyCLIP", "AdaCLIP", "AprilGAN", "AnoVL", "MVFA")
    setups = ("zero-shot", "2-shot", "4-shot", "8-shot", "16-shot")
    categories = ("HIS", "ChestXray", "OCT17", "BrainMRI", "LiverCT", "RESC")
    expected = {f"{m}/{s}/{c}/seed0" for m in models for s in setups for c in categories}
    expected |= {f"AACLIP/zero-shot/{c}/seed0" for c in categories}  # a zero-shot method: no K-shot rows
    assert {row[0] for row in rows} == expected
    assert len(rows) == 216


def test_grid_axes_multiply_the_cells_and_are_validated() -> None:
    raw = yaml.safe_load((CONFIGS / "demo" / "grid.yaml").read_text())
    plain = GridSpec.from_dict(raw).cells(seeds=[0])
    raw["axes"] = {"channels": {"repeat": {}, "2.5D": {"data": {"init_args": {"channels": "adjacent"}}}}}
    cells = GridSpec.from_dict(raw).cells(seeds=[0])
    assert len(cells) == 2 * len(plain)
    adjacent = [cell for cell in cells if cell.coordinates["channels"] == "2.5D"]
    assert all(cell.test_data["init_args"]["channels"] == "adjacent" for cell in adjacent)
    assert len({cell.dirname for cell in cells}) == len(cells)
    raw["axes"] = {"model": {"x": {}}}
    with pytest.raises(ValueError, match="Axis 'model'"):
        GridSpec.from_dict(raw)
    raw["axes"] = {"channels": {"x": {"optimizer": {}}}}
    with pytest.raises(ValueError, match="Axis 'channels'"):
        GridSpec.from_dict(raw)


def test_grid_spec_rejects_unknown_names(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONFIGS / "demo" / "grid.yaml").read_text())
    raw["setups"]["fitted"]["tasks"] = ["DemoBraTS->Nowhere"]
    with pytest.raises(ValueError, match="dataset 'Nowhere'"):
        GridSpec.from_dict(raw)
    assert math.isclose(
        GridSpec.from_dict(yaml.safe_load((CONFIGS / "demo" / "grid.yaml").read_text())).table["scale"], 100
    )
