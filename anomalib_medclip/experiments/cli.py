# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-medclip-grid``: run a study's grid and write its results tables.

Usage::

    anomalib-medclip-grid run GRID.yaml [--seeds 0 1 2] [--output results/grid] [--cells GLOB ...]
                              [--set dotted.key=value ...] [--jobs N] [--dry-run]
    anomalib-medclip-grid table GRID.yaml [--seeds ...] [--output ...] [--cells ...] [--set ...]

(also ``python -m anomalib_medclip.experiments ...``). Outputs go to ``<output>/<study>/``: ``cells/<cell>/``
(``result.json``, ``config.yaml``, anomalib's outputs), ``fits/<fit>/`` (checkpoints shared by the cells tested
from them), ``cells.csv``, ``table.csv``, ``table.md`` and ``grid.log``. The exit status is 1 when a cell failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anomalib_medclip.experiments.spec import Cell, GridSpec

__all__ = ["main"]

logger = logging.getLogger("anomalib_medclip.experiments")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomalib-medclip-grid", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the cells without a finished result, then write the tables"),
        ("table", "only (re)write the tables from the stored cell results"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("grid", type=Path, help="grid YAML (configs/<study>/grid.yaml)")
        sub.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the grid's 'seeds')")
        sub.add_argument(
            "--output", type=Path, default=Path("results/grid"), help="results root (default: %(default)s)"
        )
        sub.add_argument(
            "--cells", nargs="+", metavar="GLOB", help="only cells whose id (model/setup/task/seedN) matches"
        )
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a grid value, e.g. datasets.BraTS-MET.init_args.root=/data/brats (repeatable)",
        )
        if name == "run":
            sub.add_argument(
                "--dry-run", action="store_true", help="list the cells, their weights and data; run nothing"
            )
            sub.add_argument("--jobs", type=int, default=1, help="jobs in parallel, one per GPU (default: 1, serial)")
    return parser


def _dry_run(cells: list[Cell], root: Path) -> None:
    """Print one line per cell: state, model class, weights, data."""
    from anomalib.data import AnomalibDataModule
    from anomalib.models.components import AnomalibModule

    from anomalib_medclip.experiments.checks import data_status, resolve_class, weights_status
    from anomalib_medclip.experiments.jobs import cell_state

    states: dict[str, int] = {}
    print("cell\tstate\tmodel class\tweights\tdata")
    for cell in cells:
        state = cell_state(root, cell)
        states[state] = states.get(state, 0) + 1
        class_path = cell.model_config["class_path"]
        model_cls = resolve_class(class_path, AnomalibModule)
        weights = weights_status(cell.model_config, model_cls)
        fitted = cell.train_data is not None and not cell.in_domain
        roles = [("train", cell.train_data), ("test", cell.test_data)] if fitted else [("data", cell.test_data)]
        data = []
        for role, config in roles:
            ok, text = data_status(config, resolve_class(config.get("class_path", ""), AnomalibDataModule))
            data.append(f"{role}: {'ok' if ok else 'MISSING'} {text}")
        klass = class_path if model_cls is not None else f"{class_path} (NOT INSTALLED)"
        weights_text = ("ok " if weights[0] else "MISSING ") + weights[1]
        print(f"{cell.id}\t{state}\t{klass}\t{weights_text}\t{' | '.join(data)}")
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    print(f"{len(cells)} cells ({summary})")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``anomalib-medclip-grid``; returns the exit status."""
    args = _parser().parse_args(argv)
    spec = GridSpec.from_file(args.grid, args.overrides)
    cells = spec.cells(seeds=args.seeds, patterns=args.cells)
    if not cells:
        print(f"No cell of {args.grid} matches {args.cells}.", file=sys.stderr)
        return 2
    root = args.output / spec.study
    if args.command == "run" and args.dry_run:
        _dry_run(cells, root)
        return 0

    import anomalib_medclip  # noqa: F401 - registers the plugin's classes for short class_path names
    from anomalib_medclip.experiments.tables import write_tables

    root.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(root / "grid.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if args.command == "run":
            _run(cells, root, args.jobs)
        paths = write_tables(spec, cells, root)
    finally:
        logger.removeHandler(handler)
        handler.close()
    from anomalib_medclip.experiments.tables import cell_records

    records = cell_records(cells, root)
    counts = records.status.value_counts().to_dict()
    print(f"{len(cells)} cells: {counts}. Tables: {paths['markdown']} and {paths['table']}")
    return 1 if counts.get("failed") else 0


def _run(cells: list[Cell], root: Path, jobs: int) -> None:
    """Run every cell through anomalib's SerialRunner (or ParallelRunner with ``jobs`` > 1)."""
    from anomalib.pipelines.components.runners import ParallelRunner, SerialRunner

    from anomalib_medclip.experiments.jobs import GridJobGenerator, cell_state

    cached = [cell for cell in cells if cell_state(root, cell) == "ok"]
    for cell in cached:
        print(f"cached\t{cell.id}")
    todo = [cell for cell in cells if cell not in cached]
    if not todo:
        return
    generator = GridJobGenerator(root)
    runner = ParallelRunner(generator, n_jobs=jobs) if jobs > 1 else SerialRunner(generator)
    records = runner.run({"cells": todo})
    for record in records.itertuples():
        error = getattr(record, "error", "") if record.status == "failed" else ""
        print(f"{record.status}\t{record.cell}\t{error}".rstrip())


if __name__ == "__main__":
    sys.exit(main())
