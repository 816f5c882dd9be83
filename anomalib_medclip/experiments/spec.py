# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Grid specifications: one YAML per study, expanded into cells (model × setup × task × seed).

A grid file (see ``configs/*/grid.yaml`` and ``configs/README.md``) has these keys:

- ``study``, ``title``, ``description``: names and the protocol text copied into the results table;
- ``seeds``: default seeds (the command line's ``--seeds`` replaces them);
- ``defaults``: ``model`` / ``data`` / ``trainer`` settings shared by every cell;
- ``datasets``: named datamodule configs (``class_path`` + ``init_args``, as in anomalib configs);
- ``models``: named layers, each with a ``model`` config and optional ``data`` / ``trainer`` settings;
- ``setups``: named layers with ``tasks`` (``"X"``: test on X; ``"X->Y"``: fit on X, test on Y), ``fit``
  (whether a plain ``"X"`` task first fits on X), optional ``models`` (subset), ``calibrate`` and ``per_model``
  (layers for single models);
- ``axes`` (optional): further grid axes, each named values that are layers, e.g. ``planes: {axial: {},
  tri-planar: {data: {init_args: {planes: [axial, coronal, sagittal]}}}}`` or ``channels`` / ``chain``; every cell
  is repeated for each combination of the axes' values (``Cell.variant``), which join the cell id and folder;
- ``table``: ``rows`` and ``columns`` (each a list out of ``model``, ``setup``, ``task`` and the axis names),
  ``metrics`` (display name -> result key) and ``scale``.

Layers are deep-merged in the order defaults, model, setup, setup's ``per_model`` entry, then the axes' values in
axis order (for data: defaults, dataset, model, setup, ``per_model``, axes). The cell's seed is
written into ``model.init_args.seed`` (every model of the package takes one) and given to ``seed_everything``.

Example:
    >>> spec = GridSpec.from_dict({
    ...     "study": "demo", "datasets": {"A": {"class_path": "DemoBraTS"}},
    ...     "models": {"M": {"model": {"class_path": "VanillaCLIP"}}},
    ...     "setups": {"zero-shot": {"tasks": ["A"]}}})
    >>> [cell.id for cell in spec.cells(seeds=[0, 1])]
    ['M/zero-shot/A/seed0', 'M/zero-shot/A/seed1']
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = ["Calibration", "Cell", "GridSpec", "apply_override", "deep_merge"]

Calibration = Literal["test", "train"]
TABLE_KEYS = ("model", "setup", "task")
_LAYER_KEYS = {"model", "data", "trainer"}
_ARROW = "->"


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in; nested dicts merge, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_override(raw: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply ``"dotted.key=value"`` (value read as YAML) to a copy of a raw grid dict.

    Dataset, model and setup names may contain dots only if they are not followed by more keys; the usual case,
    ``datasets.BraTS-MET.init_args.root=/data/brats``, works.
    """
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        msg = f"Override {assignment!r} is not of the form dotted.key=value."
        raise ValueError(msg)
    update: dict[str, Any] = {}
    node = update
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(value)
    return deep_merge(raw, update)


def _slug(text: str) -> str:
    """File-name-safe version of a cell part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace(_ARROW, "-to-")).strip("-")


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_setup(name: str, setup: dict[str, Any], raw: dict[str, Any], where: str) -> None:
    """Refuse a setup without tasks, or naming models or datasets the grid does not define."""
    if not setup.get("tasks"):
        msg = f"Setup '{name}' of the {where} lists no tasks."
        raise ValueError(msg)
    for model in setup.get("models", []):
        if model not in raw["models"]:
            msg = f"Setup '{name}' of the {where} names model '{model}', not in models {list(raw['models'])}."
            raise ValueError(msg)
    for task in setup["tasks"]:
        for dataset in str(task).split(_ARROW):
            if dataset.strip() not in raw["datasets"]:
                msg = (
                    f"Task '{task}' of setup '{name}' in the {where} names dataset '{dataset.strip()}', "
                    f"not in datasets {list(raw['datasets'])}."
                )
                raise ValueError(msg)
    if setup.get("calibrate", "test") not in {"test", "train"}:
        msg = f"Setup '{name}': calibrate={setup['calibrate']!r}; expected 'test' or 'train'."
        raise ValueError(msg)


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a model in a setup on a task with one seed.

    Attributes:
        model, setup, task, seed: the cell's coordinates (``task`` as written in the grid, e.g. ``"Brain->Liver"``).
        model_config: anomalib model config (``class_path`` + ``init_args``) with the seed filled in.
        test_data: datamodule config of the tested data.
        train_data: datamodule config to fit on first, or ``None`` (test only).
        trainer: Engine / Lightning Trainer keyword arguments.
        calibrate: where thresholds and normalisation come from when the tested data differ from the training
            data: ``"test"`` (validation split of the tested data, as for zero-shot cells) or ``"train"``
            (the checkpoint's, learnt on the training data's validation split).
        variant: ``(axis, value)`` pairs of the grid's extra ``axes`` (empty without them).
    """

    model: str
    setup: str
    task: str
    seed: int
    model_config: dict[str, Any] = field(repr=False)
    test_data: dict[str, Any] = field(repr=False)
    train_data: dict[str, Any] | None = field(repr=False)
    trainer: dict[str, Any] = field(repr=False)
    calibrate: Calibration = "test"
    variant: tuple[tuple[str, str], ...] = ()

    @property
    def _variant_label(self) -> tuple[str, ...]:
        return ("+".join(value for _, value in self.variant),) if self.variant else ()

    @property
    def id(self) -> str:
        """``model/setup/task[/axis values]/seedN``, unique within a grid."""
        return "/".join((self.model, self.setup, self.task, *self._variant_label, f"seed{self.seed}"))

    @property
    def dirname(self) -> str:
        """Folder name of the cell's outputs."""
        parts = (self.model, self.setup, self.task, *self._variant_label, f"seed{self.seed}")
        return "__".join(_slug(part) for part in parts)

    @property
    def coordinates(self) -> dict[str, str]:
        """The cell's row keys: model, setup, task and each axis value (what tables group by)."""
        return {"model": self.model, "setup": self.setup, "task": self.task, **dict(self.variant)}

    @property
    def train_name(self) -> str | None:
        """Name of the dataset fitted on (``None`` for test-only cells)."""
        if self.train_data is None:
            return None
        return self.task.split(_ARROW)[0].strip()

    @property
    def test_name(self) -> str:
        """Name of the tested dataset."""
        return self.task.split(_ARROW)[-1].strip()

    @property
    def in_domain(self) -> bool:
        """Whether the fitted and tested datamodules are configured identically."""
        return self.train_data == self.test_data

    @property
    def fit_key(self) -> str | None:
        """Folder name shared by every cell that needs the same fit (``None`` for test-only cells)."""
        if self.train_data is None:
            return None
        parts = (self.model, self.setup, self.train_name or "", *self._variant_label, f"seed{self.seed}")
        return "__".join(_slug(part) for part in parts)

    @property
    def fit_hash(self) -> str | None:
        """Hash of everything the fit depends on."""
        if self.train_data is None:
            return None
        return _hash([self.model_config, self.train_data, self.trainer, self.seed])

    @property
    def config_hash(self) -> str:
        """Hash of everything the cell's result depends on; a stored result with another hash is stale."""
        return _hash([self.model_config, self.test_data, self.train_data, self.trainer, self.seed, self.calibrate])

    def anomalib_config(self, data: dict[str, Any], root: Path) -> dict[str, Any]:
        """A config ``anomalib fit|test --config`` accepts, for provenance and reruns by hand."""
        return {
            "seed_everything": self.seed,
            "trainer": self.trainer,
            "default_root_dir": str(root),
            "model": self.model_config,
            "data": data,
        }


@dataclass
class GridSpec:
    """A parsed grid file. Build with :meth:`from_file` or :meth:`from_dict`."""

    study: str
    raw: dict[str, Any]
    path: Path | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None) -> GridSpec:
        """Validate the top-level structure of a grid dict."""
        where = f"grid {path}" if path else "grid"
        for key in ("study", "datasets", "models", "setups"):
            if not raw.get(key):
                msg = f"The {where} has no '{key}'; see configs/README.md for the grid format."
                raise ValueError(msg)
        for name, setup in raw["setups"].items():
            _check_setup(name, setup, raw, where)
        axes = raw.get("axes") or {}
        for axis, values in axes.items():
            bad = [v for v, layer in (values or {}).items() if set(layer or {}) - _LAYER_KEYS]
            if axis in TABLE_KEYS or not values or bad:
                msg = (
                    f"Axis '{axis}' of the {where} must be a new name (not {TABLE_KEYS}) with named values, each a "
                    f"layer of {sorted(_LAYER_KEYS)} settings (value(s) {bad} have other keys)."
                )
                raise ValueError(msg)
        table = raw.get("table", {})
        known = (*TABLE_KEYS, *axes)
        unknown = (set(table.get("rows", [])) | set(table.get("columns", []))) - set(known)
        if unknown:
            msg = f"table rows/columns of the {where} use {sorted(unknown)}; expected names out of {known}."
            raise ValueError(msg)
        return cls(study=str(raw["study"]), raw=raw, path=path)

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | None = None) -> GridSpec:
        """Read a grid YAML file, applying ``dotted.key=value`` overrides."""
        path = Path(path)
        if not path.is_file():
            msg = f"Grid file {path} does not exist."
            raise FileNotFoundError(msg)
        raw = yaml.safe_load(path.read_text()) or {}
        for assignment in overrides or []:
            raw = apply_override(raw, assignment)
        return cls.from_dict(raw, path)

    @property
    def seeds(self) -> list[int]:
        """Default seeds of the grid."""
        return [int(seed) for seed in self.raw.get("seeds", [0])]

    @property
    def table(self) -> dict[str, Any]:
        """Table layout: rows, columns, metrics (display name -> result key), scale."""
        table = self.raw.get("table", {})
        return {
            "rows": list(table.get("rows", ["model", "setup"])),
            "columns": list(table.get("columns", ["task"])),
            "metrics": dict(table.get("metrics", {"image AUROC": "image_AUROC"})),
            "scale": float(table.get("scale", 100)),
        }

    @property
    def axes(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The extra grid axes: per axis, its values' layers (empty without ``axes``)."""
        return {
            axis: {name: layer or {} for name, layer in values.items()}
            for axis, values in self.raw.get("axes", {}).items()
        }

    def _layers(self, model: str, setup: str, variant: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
        setup_cfg = self.raw["setups"][setup]
        layers = [self.raw.get("defaults", {}), self.raw["models"][model], setup_cfg]
        layers.append(setup_cfg.get("per_model", {}).get(model, {}))
        layers += [self.axes[axis][value] for axis, value in variant]
        return [{key: value for key, value in layer.items() if key in _LAYER_KEYS} for layer in layers]

    def _cell(self, model: str, setup: str, task: str, seed: int, variant: tuple[tuple[str, str], ...] = ()) -> Cell:
        layers = self._layers(model, setup, variant)
        merged: dict[str, Any] = {}
        for layer in layers:
            merged = deep_merge(merged, layer)
        model_config = merged.get("model", {})
        if "class_path" not in model_config:
            msg = f"Model '{model}' of grid '{self.study}' has no model.class_path."
            raise ValueError(msg)
        model_config = deep_merge(model_config, {"init_args": {"seed": seed}})

        def data(name: str) -> dict[str, Any]:  # defaults < dataset < model < setup < setup's per-model layer
            config = deep_merge(layers[0].get("data", {}), self.raw["datasets"][name])
            for layer in layers[1:]:
                config = deep_merge(config, layer.get("data", {}))
            return config

        setup_cfg = self.raw["setups"][setup]
        names = [name.strip() for name in task.split(_ARROW)]
        fits = len(names) == 2 or setup_cfg.get("fit", False)
        return Cell(
            model=model,
            setup=setup,
            task=task,
            seed=seed,
            model_config=model_config,
            test_data=data(names[-1]),
            train_data=data(names[0]) if fits else None,
            trainer=merged.get("trainer", {}),
            calibrate=setup_cfg.get("calibrate", "test"),
            variant=variant,
        )

    def cells(self, seeds: list[int] | None = None, patterns: list[str] | None = None) -> list[Cell]:
        """All cells in grid order (setup, model, task, axis values, seed), optionally those whose id matches a glob."""
        variants = [tuple(zip(self.axes, values, strict=True)) for values in itertools.product(*self.axes.values())]
        cells = []
        for setup, setup_cfg in self.raw["setups"].items():
            for model in setup_cfg.get("models", list(self.raw["models"])):
                for task in setup_cfg["tasks"]:
                    for variant in variants:
                        for seed in seeds if seeds is not None else self.seeds:
                            cells.append(self._cell(model, setup, str(task), int(seed), variant))
        if patterns:
            cells = [cell for cell in cells if any(fnmatch.fnmatchcase(cell.id, p) for p in patterns)]
        return cells
