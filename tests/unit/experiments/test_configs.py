# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Every config in configs/ parses with anomalib's own CLI parser (``anomalib train --config``), grids cell by cell.

Parsing resolves ``class_path`` names and type-checks every ``init_args`` entry against the classes' signatures
(nothing is instantiated, so no weights or data are needed); an unknown model class fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from anomalib_medclip.data.bmad_layout import CATEGORY_ALIASES
from anomalib_medclip.experiments.checks import resolve_class
from anomalib_medclip.experiments.spec import GridSpec

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
GRIDS = sorted(CONFIGS.rglob("grid.yaml"))
STANDALONE = sorted(p for p in CONFIGS.rglob("*.yaml") if p.name != "grid.yaml")


def _rel(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


@pytest.fixture(scope="module")
def train_parser() -> Any:
    """anomalib's CLI parser with its subcommands, built without parsing ``sys.argv`` or instantiating anything."""
    from anomalib.cli import AnomalibCLI

    cli = AnomalibCLI.__new__(AnomalibCLI)
    cli.parser = cli.init_parser()
    cli.subcommand_parsers, cli.subcommand_method_arguments = {}, {}
    cli.add_subcommands()
    return cli.parser


def _require_model(class_path: str) -> None:
    from anomalib.models.components import AnomalibModule

    if resolve_class(class_path, AnomalibModule) is None:
        pytest.fail(f"Unknown model class {class_path!r}.")


def _parse(parser: Any, config: dict[str, Any] | Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = config if isinstance(config, Path) else tmp_path / "config.yaml"
    if not isinstance(config, Path):
        path.write_text(yaml.safe_dump(config))
    try:
        parser.parse_args(["train", "--config", str(path)])
    except SystemExit:
        pytest.fail(
            f"{config if isinstance(config, Path) else json.dumps(config)} does not parse:\n{capsys.readouterr().err}"
        )


@pytest.mark.parametrize("path", STANDALONE, ids=_rel)
def test_standalone_config_parses(path: Path, train_parser: Any, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = yaml.safe_load(path.read_text())
    assert "Weights" in path.read_text() or "weights" in path.read_text(), f"{path} must say which weights it needs"
    _require_model(config["model"]["class_path"])
    _parse(train_parser, path, tmp_path, capsys)


def _grid_models() -> list[tuple[Path, str]]:
    return [(grid, model) for grid in GRIDS for model in yaml.safe_load(grid.read_text())["models"]]


@pytest.mark.parametrize(("grid", "model"), _grid_models(), ids=lambda v: _rel(v) if isinstance(v, Path) else v)
def test_grid_model_configs_parse(
    grid: Path, model: str, train_parser: Any, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cells = [cell for cell in GridSpec.from_file(grid).cells(seeds=[0]) if cell.model == model]
    _require_model(cells[0].model_config["class_path"])
    seen = set()
    for cell in cells:  # one parse per distinct model configuration (setups differ), with one of its datasets
        key = json.dumps([cell.model_config, cell.trainer], sort_keys=True)
        if key not in seen:
            seen.add(key)
            _parse(train_parser, cell.anomalib_config(cell.test_data, tmp_path), tmp_path, capsys)


@pytest.mark.parametrize("grid", GRIDS, ids=_rel)
def test_grid_datasets_parse(grid: Path, train_parser: Any, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from anomalib.models.components import AnomalibModule

    cells = GridSpec.from_file(grid).cells(seeds=[0])
    model_cell = next(c for c in cells if resolve_class(c.model_config["class_path"], AnomalibModule) is not None)
    seen = set()
    for data in (d for cell in cells for d in (cell.train_data, cell.test_data) if d is not None):
        category = data.get("init_args", {}).get("category")
        if data["class_path"] == "MedBMAD":
            assert category in CATEGORY_ALIASES, f"{grid}: unknown BMAD category {category!r}"
        key = json.dumps({**data, "init_args": {**data.get("init_args", {}), "category": None}}, sort_keys=True)
        if key not in seen:  # categories are plain strings to the parser (checked above)
            seen.add(key)
            _parse(train_parser, model_cell.anomalib_config(data, tmp_path), tmp_path, capsys)
