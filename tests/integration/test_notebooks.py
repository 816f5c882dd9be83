# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The notebooks run top to bottom offline (their own assert cells included) and their saved outputs are real."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["quickstart.ipynb", "volumes_3d.ipynb", "compare_models.ipynb"]
TIMEOUT_S = 600  # per notebook, all cells together
MAX_BYTES = 1_500_000


def _execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    """Run a copy of ``notebooks/<name>`` with ``workdir`` as working directory; raises if a cell fails."""
    path = shutil.copy(NOTEBOOKS / name, workdir / name)
    notebook = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + TIMEOUT_S
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout_func=lambda _cell: max(1, int(deadline - time.monotonic())),
        startup_timeout=120,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


def _outputs(notebook: nbformat.NotebookNode, mime: str) -> list[str]:
    """The ``mime`` payloads of all rich outputs, in cell order."""
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    return [o.data[mime] for o in outputs if mime in o.get("data", {})]


def _run_dir(workdir: Path, job: str, model: str) -> Path:
    """The single versioned run folder ``results/notebooks/<job>/<model>/DemoBraTS/t2w/v0``."""
    runs = sorted((workdir / "results" / "notebooks" / job / model / "DemoBraTS" / "t2w").glob("v*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("name", NAMES)
def test_saved_notebook_is_executed(name: str) -> None:
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert path.stat().st_size < MAX_BYTES
    assert notebook.cells[0].cell_type == "markdown"
    assert notebook.cells[0].source.startswith("# ")  # a title
    counts = [c.execution_count for c in notebook.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # one run, top to bottom
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert _outputs(notebook, "image/png")


def test_quickstart(tmp_path: Path) -> None:
    notebook = _execute("quickstart.ipynb", tmp_path)
    run = _run_dir(tmp_path, "quickstart", "MedCrossModalCLIP")
    assert (run / "weights" / "lightning" / "model.ckpt").is_file()
    overlays = list((run / "images").glob("BraTS-MET-*_z*.png"))
    assert overlays
    assert len(_outputs(notebook, "image/png")) == 2  # one lesion overlay per test volume


def test_volumes_3d(tmp_path: Path) -> None:
    notebook = _execute("volumes_3d.ipynb", tmp_path)
    volumes = _run_dir(tmp_path, "volumes_3d", "MedCrossModalCLIP") / "volumes"
    table = pd.read_csv(volumes / "metrics_per_volume.csv")
    maps = sorted(p.name.removesuffix("_anomaly_map.nii.gz") for p in volumes.glob("*_anomaly_map.nii.gz"))
    assert len(maps) == 2  # the test subjects
    assert table.volume_id.tolist() == maps  # one row per test volume
    assert json.loads((volumes / "summary.json").read_text())["volumes"] == 2
    assert len(_outputs(notebook, "image/png")) >= 6  # three plots and the viewer's slices


def test_compare_models(tmp_path: Path) -> None:
    notebook = _execute("compare_models.ipynb", tmp_path)
    for model in ("VanillaCLIP", "MedCrossModalCLIP", "AprilGAN"):
        assert (_run_dir(tmp_path, "compare_models", model) / "volumes" / "summary.json").is_file()
    final = _outputs(notebook, "text/plain")[-1]  # the AUROC check's table, after its asserts passed
    assert all(model in final for model in ("VanillaCLIP", "MedCrossModalCLIP", "AprilGAN"))
