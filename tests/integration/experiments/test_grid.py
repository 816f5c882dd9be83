# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The grid runner's fits: tables equal the per-cell results, reruns compute nothing, crashes are reported,
cross-domain cells share one fit (tiny backbone). The dry runs are in ``tests/unit/experiments/test_grid_spec.py``."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

from anomalib_medclip.experiments.cli import main

TINY = {"backbone": "ViT-tiny-test", "pretrained": None, "image_size": 32, "visualizer": False}
TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "max_epochs": 1,
    "limit_train_batches": 1,
}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated DemoBraTS subjects (one per split)."""
    from anomalib_medclip.data import generate_demo_brats

    return generate_demo_brats(tmp_path_factory.mktemp("demo") / "brats", n_subjects=3, seed=0)


def _grid(tmp_path: Path, demo_root: Path, **spec: object) -> Path:
    raw = {
        "study": "t",
        "seeds": [0],
        "defaults": {
            "trainer": TRAINER,
            "model": {"init_args": TINY},
            "data": {"init_args": {"num_workers": 0, "train_batch_size": 16, "eval_batch_size": 128}},
        },
        "datasets": {"Demo": {"class_path": "DemoBraTS", "init_args": {"root": str(demo_root), "n_subjects": 3}}},
        **spec,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_two_models_two_seeds_table_matches_cells_rerun_is_cached_and_crash_reported(
    tmp_path: Path, demo_root: Path, capsys: pytest.CaptureFixture
) -> None:
    grid = _grid(
        tmp_path,
        demo_root,
        models={
            "VanillaCLIP": {"model": {"class_path": "VanillaCLIP"}},
            "MedCrossModalCLIP": {
                "model": {"class_path": "MedCrossModalCLIP", "init_args": {"n_ctx": 1, "prompt_depth": 1}}
            },
        },
        setups={"zero-shot": {"tasks": ["Demo", "Missing"]}},
        table={
            "rows": ["model", "setup"],
            "columns": ["task"],
            "metrics": {"AUROC": "image_AUROC", "Dice": "volume3d_dice"},
        },
    )
    raw = yaml.safe_load(grid.read_text())
    raw["datasets"]["Missing"] = {"class_path": "BraTS", "init_args": {"root": str(tmp_path / "no_brats")}}
    grid.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    demo_cells = ["--cells", "*/Demo/*"]
    assert main(["run", str(grid), "--seeds", "0", "1", "--output", str(out), *demo_cells]) == 0
    cells = sorted((out / "t" / "cells").glob("*/result.json"))
    assert len(cells) == 4
    results = [json.loads(p.read_text()) for p in cells]
    assert all(r["status"] == "ok" for r in results)

    table = pd.read_csv(out / "t" / "table.csv")
    markdown = (out / "t" / "table.md").read_text()
    for model in ("VanillaCLIP", "MedCrossModalCLIP"):
        row = table[table.model == model].iloc[0]
        for display, key in (("AUROC", "image_AUROC"), ("Dice", "volume3d_dice")):
            values = [r["metrics"][key] for r in results if r["model"] == model]
            assert len(values) == 2
            mean, std = statistics.mean(values), statistics.stdev(values)
            assert row[f"Demo {display} mean"] == pytest.approx(mean)
            assert row[f"Demo {display} std"] == pytest.approx(std)
            assert f"{mean * 100:.2f} ± {std * 100:.2f}" in markdown
    assert re.search(r"\| MedCrossModalCLIP \| zero-shot \|", markdown)
    # The ONE_CLASS model was calibrated on the validation split before testing (no NaN thresholds).
    assert all("validation split" in r["protocol"]["thresholds_and_normalisation"] for r in results)

    mtimes = {p: p.stat().st_mtime_ns for p in cells}
    capsys.readouterr()
    assert main(["run", str(grid), "--seeds", "0", "1", "--output", str(out), *demo_cells]) == 0
    printed = capsys.readouterr().out
    assert printed.count("cached\t") == 4
    assert {p: p.stat().st_mtime_ns for p in cells} == mtimes
    assert not (out / "t" / "fits").exists()

    # A crashing cell (its data are missing) is recorded with its error, in the table, the log and the exit status.
    assert (
        main(["run", str(grid), "--seeds", "0", "1", "--output", str(out), "--cells", "VanillaCLIP/*/Missing/seed0"])
        == 1
    )
    crashed = json.loads(next((out / "t" / "cells").glob("VanillaCLIP*Missing*/result.json")).read_text())
    assert crashed["status"] == "failed"
    assert "does not exist" in crashed["error"]
    assert "Traceback" in crashed["traceback"]
    assert main(["table", str(grid), "--seeds", "0", "1", "--output", str(out)]) == 1
    markdown = (out / "t" / "table.md").read_text()
    assert re.search(
        r"\| VanillaCLIP \| zero-shot \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \| failed \| failed \|", markdown
    )
    assert re.search(r"\| MedCrossModalCLIP \| zero-shot \|.* pending \| pending \|", markdown)
    assert "`VanillaCLIP/zero-shot/Missing/seed0`: FileNotFoundError" in markdown
    assert "does not exist" in (out / "t" / "grid.log").read_text()

    # A changed configuration makes the stored results stale: the dry run says so instead of 'ok'.
    capsys.readouterr()
    changed = ["--set", "defaults.trainer.max_epochs=2", "--dry-run", *demo_cells]
    assert main(["run", str(grid), "--seeds", "0", "--output", str(out), *changed]) == 0
    assert capsys.readouterr().out.count("\tstale\t") == 2


@pytest.mark.slow  # ~40 s: a fit and two tests
def test_cross_domain_cells_share_one_fit_and_a_crash_is_reported(tmp_path: Path, demo_root: Path) -> None:
    grid = _grid(
        tmp_path,
        demo_root,
        models={
            "MedCrossModalCLIP": {
                "model": {"class_path": "MedCrossModalCLIP", "init_args": {"n_ctx": 1, "prompt_depth": 1}}
            }
        },
        setups={"trained": {"tasks": ["Demo->Other", "Demo->Missing"]}},
        table={"rows": ["model"], "columns": ["task"], "metrics": {"AUROC": "image_AUROC"}},
    )
    raw = yaml.safe_load(grid.read_text())
    raw["datasets"]["Other"] = {
        "class_path": "DemoBraTS",
        "init_args": {"root": str(demo_root), "n_subjects": 3, "seed": 1},
    }
    raw["datasets"]["Missing"] = {"class_path": "BraTS", "init_args": {"root": str(tmp_path / "no_brats")}}
    grid.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    assert main(["run", str(grid), "--output", str(out)]) == 1  # a failed cell makes the command fail

    fits = list((out / "t" / "fits").iterdir())
    assert len(fits) == 1
    fit = json.loads((fits[0] / "fit.json").read_text())
    assert fit["trained"]
    assert Path(fit["checkpoint"]).is_file()
    results = {r["task"]: r for r in (json.loads(p.read_text()) for p in (out / "t" / "cells").glob("*/result.json"))}
    ok, crashed = results["Demo->Other"], results["Demo->Missing"]
    assert ok["status"] == "ok"
    assert ok["fit"]["checkpoint"] == fit["checkpoint"]
    assert ok["protocol"]["thresholds_and_normalisation"] == "validation split of the tested data"
    assert 0.0 <= ok["metrics"]["image_AUROC"] <= 1.0
    assert crashed["status"] == "failed"
    assert crashed["stage"] == "test"
    assert "does not exist" in crashed["error"]
    assert "Traceback" in crashed["traceback"]

    markdown = (out / "t" / "table.md").read_text()
    assert "| MedCrossModalCLIP | " in markdown
    assert "| failed |" in markdown
    assert "`MedCrossModalCLIP/trained/Demo->Missing/seed0`" in markdown
    assert "does not exist" in markdown
    assert "does not exist" in (out / "t" / "grid.log").read_text()
    cells = pd.read_csv(out / "t" / "cells.csv")
    assert sorted(cells.status) == ["failed", "ok"]
