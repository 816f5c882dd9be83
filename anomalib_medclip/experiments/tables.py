# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Results tables of a grid, in the layout of the study's paper table, built from the stored cell results.

- ``cells.csv``: one row per cell and seed (status, error, every metric, raw values in [0, 1]);
- ``table.csv``: the paper layout, one row per ``table.rows`` key, and per ``table.columns`` key and metric the
  mean, the sample standard deviation (ddof=1) over the seeds that finished, their count and the failed count;
- ``table.md``: the same as text (``mean ± std``, scaled by ``table.scale``), the protocol, and every failed cell
  with its error; rows with a test-set-selected cell (MVFA's ``selection=test_set``) are marked † and listed. A
  table entry without any finished seed reads ``failed`` (some seed crashed) or ``pending``.

Every write is atomic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from anomalib_medclip.experiments.jobs import cell_state, read_result
from anomalib_medclip.experiments.spec import Cell, GridSpec
from anomalib_medclip.utils import write_atomic

__all__ = ["cell_records", "summarise", "write_tables"]

_ARROW = "->"
TEST_SET_SELECTED_NOTE = (
    "These cells kept the epoch that scored best on the test split (the original MVFA code's choice, "
    "`selection=test_set`): their numbers are not valid zero-shot or few-shot results."
)


def cell_records(cells: list[Cell], root: Path) -> pd.DataFrame:
    """One row per cell: coordinates, state (``ok``/``failed``/``stale``/``pending``), error and metrics."""
    rows = []
    for cell in cells:
        state = cell_state(root, cell)
        result = read_result(root, cell) if state in {"ok", "failed"} else None
        row: dict[str, Any] = {
            "cell": cell.id,
            **cell.coordinates,
            "seed": cell.seed,
            "status": state,
            "error": (result or {}).get("error"),
            "test_set_selected": bool(
                ((result or {}).get("protocol") or {}).get("model_selection", {}).get("test_set_selected", False)
            ),
        }
        row.update((result or {}).get("metrics", {}) if state == "ok" else {})
        rows.append(row)
    return pd.DataFrame(rows)


def _label(values: tuple[str, ...]) -> str:
    return " / ".join(str(v).replace(_ARROW, "→") for v in values)


def _ordered(records: pd.DataFrame, keys: list[str]) -> list[tuple[str, ...]]:
    """Distinct key tuples in grid order."""
    if not keys:
        return [()]
    return list(dict.fromkeys(tuple(row) for row in records[keys].itertuples(index=False)))


def _statistics(name: str, values: pd.Series) -> dict[str, float | int]:
    """Mean, sample std (NaN below two values) and count of one metric over the finished seeds of a cell."""
    return {
        f"{name} mean": float(values.mean()) if len(values) else math.nan,
        f"{name} std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
        f"{name} n": len(values),
    }


def _cells(
    records: pd.DataFrame, keys: list[str], key_values: tuple[str, ...], within: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The records (of ``within``, default all) whose ``keys`` take ``key_values``."""
    selected = records if within is None else within
    for key, value in zip(keys, key_values, strict=True):
        selected = selected[selected[key] == value]
    return selected


def summarise(spec: GridSpec, records: pd.DataFrame) -> pd.DataFrame:
    """The paper-layout table: per row key and (column key, metric) the mean, std, seeds done and failed."""
    table = spec.table
    rows, columns, metrics = table["rows"], table["columns"], table["metrics"]
    out = []
    finished: set[str] = set()  # column prefixes with a finished cell
    reported: set[str] = set()  # "<prefix> <metric>" names some finished cell reports
    for row_key in _ordered(records, rows):
        entry: dict[str, Any] = dict(zip(rows, row_key, strict=True))
        in_row = _cells(records, rows, row_key)
        for column_key in _ordered(records, columns):
            group = _cells(records, columns, column_key, within=in_row)
            if group.empty:
                continue
            prefix = _label(column_key)
            done = group[group.status == "ok"]
            for display, key in metrics.items():
                name = f"{prefix} {display}".strip()
                entry.update(_statistics(name, done[key].dropna() if key in done else pd.Series(dtype=float)))
                if entry[f"{name} n"]:
                    reported.add(name)
            if len(done):
                finished.add(prefix)
            entry[f"{prefix} failed".strip()] = int((group.status == "failed").sum())
            entry[f"{prefix} seeds".strip()] = len(group)
        out.append(entry)
    return _drop_unreported(pd.DataFrame(out), records, spec, finished, reported)


def _drop_unreported(
    frame: pd.DataFrame, records: pd.DataFrame, spec: GridSpec, finished: set[str], reported: set[str]
) -> pd.DataFrame:
    """Drop a metric no finished cell of its column reports (pixel AUROC of a classification set)."""
    for column_key in _ordered(records, spec.table["columns"]):
        prefix = _label(column_key)
        for display in spec.table["metrics"]:
            name = f"{prefix} {display}".strip()
            if prefix in finished and name not in reported and f"{name} n" in frame:
                frame = frame.drop(columns=[f"{name} mean", f"{name} std", f"{name} n"])
    return frame


def _entry(summary: pd.Series, name: str, prefix: str, scale: float) -> str:
    done, failed = int(summary.get(f"{name} n", 0)), int(summary.get(f"{prefix} failed".strip(), 0))
    if done == 0:
        return "failed" if failed else "pending"
    mean, std = summary[f"{name} mean"], summary[f"{name} std"]
    text = f"{mean * scale:.2f}" if math.isnan(std) else f"{mean * scale:.2f} ± {std * scale:.2f}"
    return f"{text} ({failed} failed)" if failed else text


def _markdown(spec: GridSpec, summary: pd.DataFrame, records: pd.DataFrame, seeds: list[int]) -> str:
    table = spec.table
    rows, columns, metrics, scale = table["rows"], table["columns"], table["metrics"], table["scale"]
    headers = [key.capitalize() for key in rows]
    cells = []
    for column_key in _ordered(records, columns):
        prefix = _label(column_key)
        for display in metrics:
            name = f"{prefix} {display}".strip()
            if f"{name} n" in summary:
                cells.append((name, prefix))
                headers.append(name)
    description = str(spec.raw.get("description", "")).strip()
    lines = [
        f"# {spec.raw.get('title', spec.study)}",
        "",
        *([description, ""] if description else []),
        f"Values × {scale:g}: mean ± sample std (ddof=1) over the seeds {seeds} that finished; "
        "a single finished seed shows its value alone.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    selected = records[records.test_set_selected] if "test_set_selected" in records else records.iloc[:0]
    marked = {tuple(str(v) for v in key) for key in selected[rows].itertuples(index=False)}
    for _, row in summary.iterrows():
        values = [str(row[key]) for key in rows] + [_entry(row, name, prefix, scale) for name, prefix in cells]
        if tuple(str(row[key]) for key in rows) in marked:
            values[len(rows) - 1] += " † test-set-selected"
        lines.append("| " + " | ".join(v.replace("->", "→") for v in values) + " |")
    if not selected.empty:
        lines += ["", "## † Test-set-selected cells", "", TEST_SET_SELECTED_NOTE, ""]
        lines += [f"- `{cell}`" for cell in selected.cell]
    failed = records[records.status == "failed"]
    if not failed.empty:
        lines += ["", "## Failed cells", ""]
        lines += [f"- `{row.cell}`: {str(row.error).splitlines()[0]}" for row in failed.itertuples()]
    pending = records[records.status.isin(["pending", "stale"])]
    if not pending.empty:
        lines += ["", f"{len(pending)} cell runs not done yet (pending or configuration changed)."]
    return "\n".join(lines) + "\n"


def write_tables(spec: GridSpec, cells: list[Cell], root: Path) -> dict[str, Path]:
    """Write ``cells.csv``, ``table.csv`` and ``table.md`` under ``root``; return their paths."""
    records = cell_records(cells, root)
    summary = summarise(spec, records)
    seeds = sorted({cell.seed for cell in cells})
    paths = {"cells": root / "cells.csv", "table": root / "table.csv", "markdown": root / "table.md"}
    write_atomic(paths["cells"], lambda tmp: records.to_csv(tmp, index=False))
    write_atomic(paths["table"], lambda tmp: summary.to_csv(tmp, index=False))
    text = _markdown(spec, summary, records, seeds)
    write_atomic(paths["markdown"], lambda tmp: tmp.write_text(text))
    return paths
