# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""What ``--dry-run`` reports per cell: is the model class there, are its weights local, is its data on disk.

Nothing here builds a model, reads an image or touches the network; running a cell whose weights or data are
missing still fails with the loaders' own errors (``WeightsUnavailableError``, ``FileNotFoundError``), which the
runner records in the cell's result.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from anomalib_medclip.backbones.loading import local_weights
from anomalib_medclip.data.bmad_layout import CATEGORY_ALIASES, category_dir

__all__ = ["data_status", "resolve_class", "weights_status"]

# Datamodules that generate their data on first use.
_GENERATED = {"DemoBraTS", "DemoImages"}


def resolve_class(class_path: str, base: type) -> type | None:
    """The class a config's ``class_path`` names (dotted path, or short name of a subclass of ``base``), or ``None``."""
    if "." in class_path:
        module, _, name = class_path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return None
    pending = [base]
    while pending:
        cls = pending.pop()
        if cls.__name__ == class_path:
            return cls
        pending.extend(cls.__subclasses__())
    return None


def _init_arg(config: dict[str, Any], cls: type | None, name: str) -> Any:
    """``init_args[name]`` of a config, else the class default, else ``None``."""
    args = config.get("init_args", {})
    if name in args:
        return args[name]
    if cls is not None:
        parameter = inspect.signature(cls).parameters.get(name)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return None


def weights_status(model_config: dict[str, Any], cls: type | None) -> tuple[bool, str]:
    """Whether the backbone weights (and ``official_checkpoint`` if any) are available without a download."""
    backbone = _init_arg(model_config, cls, "backbone")
    if backbone is None:
        return False, "backbone unknown (model class missing and no backbone in the config)"
    ok, where = local_weights(str(backbone), _init_arg(model_config, cls, "pretrained"))
    parts = [f"{backbone}: {where}"]
    official = _init_arg(model_config, cls, "official_checkpoint")
    if official:
        exists = Path(official).expanduser().is_file()
        ok = ok and exists
        parts.append(f"official_checkpoint {official}: {'found' if exists else 'MISSING'}")
    return ok, "; ".join(parts)


def data_status(data_config: dict[str, Any], cls: type | None) -> tuple[bool, str]:
    """Whether the datamodule's data are on disk (or generated on first use)."""
    name = data_config.get("class_path", "?").rsplit(".", 1)[-1]
    root = _init_arg(data_config, cls, "root")
    if name in _GENERATED:
        return True, f"{name} generated on first use in {root}"
    if root is None:
        return False, f"{name}: no root in the config"
    root = Path(root).expanduser()
    if not root.is_dir():
        return False, f"{name} root {root} MISSING"
    if name != "MedBMAD":
        return True, f"{name} root {root} found"
    category = _init_arg(data_config, cls, "category")
    try:
        folder = category_dir(root, str(category))
    except (FileNotFoundError, ValueError) as err:
        return False, str(err)
    shots = _init_arg(data_config, cls, "shots")
    if shots:
        fewshot_dir = _init_arg(data_config, cls, "fewshot_dir") or root / "fewshot_seed"
        listing = Path(fewshot_dir) / str(category) / f"{shots}-shot.txt"
        if not listing.is_file():
            return False, f"{folder} found but few-shot list {listing} MISSING"
    if _init_arg(data_config, cls, "leave_one_out"):
        others = [
            c for c in CATEGORY_ALIASES if c != category and any((root / a).is_dir() for a in CATEGORY_ALIASES[c])
        ]
        if not others:
            return False, f"{folder} found but no other BMAD category under {root} for leave-one-out training"
    return True, f"{folder} found"
