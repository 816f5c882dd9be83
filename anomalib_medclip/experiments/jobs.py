# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Run grid cells with anomalib's ``Engine``, as jobs of anomalib's pipeline runners.

A :class:`GridJob` holds every cell that shares one fit (same model, setup, training data and seed), so a model
trained once on Brain is tested on Brain and on Liver from the same checkpoint. anomalib's ``SerialRunner`` (or
``ParallelRunner``, one job per GPU) executes the jobs; this module only says what one job does:

1. fit (``Engine.fit``) on the training data unless ``fits/<key>/fit.json`` already records a checkpoint made
   from the same configuration;
2. per cell, build the model and the tested datamodule from their configs (jsonargparse, the same resolution as
   ``anomalib train --config``) and ``Engine.test`` them, from the checkpoint when there is one;
3. write ``cells/<cell>/result.json`` atomically: ``status`` ``ok`` with the metrics, or ``failed`` with the
   error and traceback. A cell whose stored result is ``ok`` with the same configuration hash is never re-run.

Thresholds and min-max normalisation (anomalib's PostProcessor) come from the validation split of the tested
data, except for in-domain cells (training data == tested data) and cells with ``calibrate: train``, which keep
the checkpoint's, learnt on the training data's validation split.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from anomalib.pipelines.components import Job, JobGenerator

from anomalib_medclip.experiments.spec import Cell
from anomalib_medclip.utils import write_atomic

__all__ = ["GridJob", "GridJobGenerator", "cell_state", "group_cells", "read_result", "result_path"]

logger = logging.getLogger(__name__)
RESULT = "result.json"
FIT = "fit.json"
SUMMARY_STATS = ("dice", "sensitivity", "specificity", "ppv", "dice_2d_mean")


def result_path(root: Path, cell: Cell) -> Path:
    """Where the cell's result is stored."""
    return root / "cells" / cell.dirname / RESULT


def read_result(root: Path, cell: Cell) -> dict[str, Any] | None:
    """The stored result of a cell, or ``None`` if there is none (or it is unreadable)."""
    path = result_path(root, cell)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def cell_state(root: Path, cell: Cell) -> str:
    """``ok`` / ``failed`` (stored result of this configuration), ``stale`` (other configuration) or ``pending``."""
    result = read_result(root, cell)
    if result is None:
        return "pending"
    if result.get("config_hash") != cell.config_hash:
        return "stale"
    return str(result.get("status", "pending"))


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by shared fit (test-only cells alone), in first-appearance order."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        key = f"fit:{cell.fit_key}:{cell.fit_hash}" if cell.fit_key else f"cell:{cell.id}"
        groups.setdefault(key, []).append(cell)
    return list(groups.values())


@cache
def _parser(base: type) -> Any:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, "component", required=True, fail_untyped=False)
    return parser


def instantiate(config: dict[str, Any], base: type) -> Any:
    """Build ``{"class_path": ..., "init_args": ...}`` as a subclass of ``base``, resolved like anomalib's CLI."""
    parser = _parser(base)
    namespace = parser.parse_object({"component": config})
    return parser.instantiate_classes(namespace).component


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, default=str)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _write_config(path: Path, config: dict[str, Any]) -> None:
    text = yaml.safe_dump(config, sort_keys=False)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _volume_summary(output_dir: Path) -> dict[str, Any]:
    """Per-volume standard deviations and protocol notes from the VolumeEvaluator's ``summary.json``, if any."""
    path = output_dir / "volumes" / "summary.json"
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    metrics = {f"volume3d_{s}_std": summary[f"volume_{s}"]["std"] for s in SUMMARY_STATS if f"volume_{s}" in summary}
    metrics["volumes"] = summary.get("volumes")
    protocol = {key: summary.get(key) for key in ("threshold_policy", "normalisation", "voxels_counted")}
    return {"metrics": metrics, "protocol": protocol}


class GridJob(Job):
    """Fit once (if the cells need it) and test every cell of the group; never raises for a failing cell.

    Args:
        cells: cells sharing one fit (or a single test-only cell).
        root: the study's output folder (``<output>/<study>``).
    """

    name = "grid"

    def __init__(self, cells: list[Cell], root: Path) -> None:
        super().__init__()
        self.cells = cells
        self.root = Path(root)

    def _engine(self, root_dir: Path, cell: Cell, task_id: int | None) -> Any:
        import torch
        from anomalib.engine import Engine

        trainer = dict(cell.trainer)
        if task_id is not None and torch.cuda.is_available():  # ParallelRunner: one job per GPU
            trainer["devices"] = [task_id]
        return Engine(default_root_dir=root_dir, **trainer)

    def _build(self, cell: Cell, data_config: dict[str, Any]) -> tuple[Any, Any]:
        from anomalib.data import AnomalibDataModule
        from anomalib.models.components import AnomalibModule
        from lightning.pytorch import seed_everything

        seed_everything(cell.seed, workers=True)
        return instantiate(cell.model_config, AnomalibModule), instantiate(data_config, AnomalibDataModule)

    def _fit(self, cell: Cell, task_id: int | None) -> dict[str, Any]:
        """Checkpoint of the cell's fit: the stored one when its configuration matches, else a new fit."""
        if cell.fit_key is None or cell.train_data is None:
            msg = f"Cell {cell.id} has no training data to fit on."
            raise ValueError(msg)
        fit_dir = self.root / "fits" / cell.fit_key
        try:
            stored = json.loads((fit_dir / FIT).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            stored = {}
        if stored.get("fit_hash") == cell.fit_hash and Path(stored.get("checkpoint", "")).is_file():
            logger.info("fit %s: cached (%s)", cell.fit_key, stored["checkpoint"])
            return {**stored, "cached": True}
        if fit_dir.exists():  # another configuration or an interrupted fit: start over
            shutil.rmtree(fit_dir)
        fit_dir.mkdir(parents=True)
        _write_config(fit_dir / "config.yaml", cell.anomalib_config(cell.train_data, fit_dir))
        logger.info("fit %s: training", cell.fit_key)
        start = time.perf_counter()
        model, datamodule = self._build(cell, cell.train_data)
        engine = self._engine(fit_dir, cell, task_id)
        engine.fit(model, datamodule=datamodule)
        checkpoint = engine.best_model_path
        if not checkpoint or not Path(checkpoint).is_file():
            msg = f"Fit {cell.fit_key} finished without a checkpoint (best_model_path={checkpoint!r})."
            raise RuntimeError(msg)
        record = {
            "fit_hash": cell.fit_hash,
            "checkpoint": str(Path(checkpoint).resolve()),
            "learning_type": str(model.learning_type.value),
            "trained": model.learning_type.value not in {"zero_shot", "few_shot"},
            "duration_s": round(time.perf_counter() - start, 1),
        }
        _write_json(fit_dir / FIT, record)
        return {**record, "cached": False}

    def _test(self, cell: Cell, fit: dict[str, Any] | None, task_id: int | None) -> dict[str, Any]:
        """Test one cell; returns its metrics, protocol notes and output folder."""
        from anomalib import LearningType

        cell_dir = self.root / "cells" / cell.dirname
        checkpoint = fit["checkpoint"] if fit else None
        _write_config(cell_dir / "config.yaml", cell.anomalib_config(cell.test_data, cell_dir / "run"))
        model, datamodule = self._build(cell, cell.test_data)
        engine = self._engine(cell_dir / "run", cell, task_id)
        if checkpoint and (cell.in_domain or cell.calibrate == "train"):
            calibration = "checkpoint: validation split of the training data"
            results = engine.test(model, datamodule=datamodule, ckpt_path=checkpoint)
        else:
            calibration = "validation split of the tested data"
            if checkpoint:  # trained weights, thresholds re-learnt on the tested data's validation split
                engine.validate(model, datamodule=datamodule, ckpt_path=checkpoint)
            elif model.learning_type == LearningType.ONE_CLASS:  # anomalib validates only zero/few-shot models
                engine.validate(model, datamodule=datamodule)
            results = engine.test(model, datamodule=datamodule)
        metrics = {key: float(value) for result in results for key, value in result.items()}
        output_dir = Path(engine.trainer.default_root_dir)
        volumes = _volume_summary(output_dir)
        protocol = {"thresholds_and_normalisation": calibration, **volumes.get("protocol", {})}
        if selection := getattr(model, "describe", dict)().get("model_selection"):  # MVFA: how its epoch was chosen
            protocol["model_selection"] = selection
        return {
            "metrics": {**metrics, **volumes.get("metrics", {})},
            "protocol": protocol,
            "output_dir": str(output_dir),
        }

    def _record(self, cell: Cell, **fields: Any) -> dict[str, Any]:
        record = {
            "cell": cell.id,
            **cell.coordinates,
            "seed": cell.seed,
            "config_hash": cell.config_hash,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        }
        _write_json(result_path(self.root, cell), record)
        return record

    def _failed(self, cell: Cell, err: BaseException, stage: str) -> dict[str, Any]:
        logger.error("cell %s failed (%s): %s: %s", cell.id, stage, type(err).__name__, err)
        return self._record(
            cell,
            status="failed",
            stage=stage,
            error=f"{type(err).__name__}: {err}",
            traceback="".join(traceback.format_exception(err)),
        )

    def run(self, task_id: int | None = None) -> list[dict[str, Any]]:
        """Run the cells that have no ``ok`` result of their configuration; return every cell's record."""
        records = []
        pending = []
        for cell in self.cells:
            if cell_state(self.root, cell) == "ok":
                logger.info("cell %s: cached", cell.id)
                records.append({**(read_result(self.root, cell) or {}), "cached": True})
            else:
                pending.append(cell)
        if not pending:
            return records
        fit = None
        if pending[0].fit_key is not None:
            try:
                fit = self._fit(pending[0], task_id)
            except Exception as err:  # recorded in every cell of the group, never silent
                return records + [self._failed(cell, err, "fit") for cell in pending]
        for cell in pending:
            start = time.perf_counter()
            try:
                outcome = self._test(cell, fit, task_id)
            except Exception as err:  # recorded in the cell's result and the table
                records.append(self._failed(cell, err, "test"))
                continue
            logger.info("cell %s: ok %s", cell.id, outcome["metrics"])
            records.append(
                self._record(
                    cell,
                    status="ok",
                    duration_s=round(time.perf_counter() - start, 1),
                    fit=fit,
                    **outcome,
                )
            )
        return records

    @staticmethod
    def collect(results: list[list[dict[str, Any]]]) -> pd.DataFrame:
        """One row per cell record."""
        return pd.DataFrame([record for records in results for record in records])

    @staticmethod
    def save(result: pd.DataFrame) -> None:
        """Nothing to do: every cell is already stored, and the tables are built from the stored cells."""
        del result


class GridJobGenerator(JobGenerator):
    """Yield one :class:`GridJob` per group of cells sharing a fit.

    Args:
        root: the study's output folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def job_class(self) -> type:
        """:class:`GridJob`."""
        return GridJob

    def generate_jobs(self, args: dict[str, Any], previous_stage_result: Any = None) -> Any:
        """``args["cells"]``: the cells to run; groups are yielded lazily."""
        del previous_stage_result
        for group in group_cells(args["cells"]):
            yield GridJob(group, self.root)
