# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Grid tables label the cells whose epoch was selected on the test split (MVFA's ``selection=test_set``)."""

from __future__ import annotations

import json
from pathlib import Path

from anomalib_medclip.experiments.jobs import result_path
from anomalib_medclip.experiments.spec import GridSpec
from anomalib_medclip.experiments.tables import TEST_SET_SELECTED_NOTE, write_tables

CONFIGS = Path(__file__).parents[3] / "configs"


def test_test_set_selected_rows_are_marked_and_listed(tmp_path: Path) -> None:
    spec = GridSpec.from_file(CONFIGS / "bmad_mvfa" / "grid.yaml")
    cells = spec.cells(seeds=[0], patterns=["MVFA/4-shot/LiverCT/*", "AprilGAN/4-shot/LiverCT/*"])
    assert len(cells) == 2
    for cell in cells:
        selection = {"selection": "test split", "test_set_selected": True} if cell.model == "MVFA" else {}
        record = {
            "config_hash": cell.config_hash, "status": "ok", "metrics": {"image_AUROC": 0.9, "pixel_AUROC": 0.95},
            "protocol": {"model_selection": selection} if selection else {},
        }  # fmt: skip
        path = result_path(tmp_path, cell)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
    table = write_tables(spec, cells, tmp_path)["markdown"].read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 4-shot")]
    assert [("† test-set-selected" in row) for row in rows] == [row.startswith("| 4-shot | MVFA") for row in rows]
    assert TEST_SET_SELECTED_NOTE in table
    assert "- `MVFA/4-shot/LiverCT/seed0`" in table
