# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""What a run was made of, in JSON: the explicit identity that models and datamodules give the reports.

Reports (``summary.json`` of the 3D evaluation, grid tables) must say the protocol behind their numbers. Rather than
guessing from attribute names, they ask each object for its :class:`Describable` ``describe()``; an object without
one (a third-party model or datamodule) is reported by its class name only, and says so.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["Describable", "describe", "jsonable"]


@runtime_checkable
class Describable(Protocol):
    """An object that says, as JSON-able settings, what it is and how it was configured."""

    def describe(self) -> dict[str, Any]:
        """The settings that identify this object in a report (class name included)."""
        ...


def jsonable(value: object) -> object:
    """A JSON value: scalars and ``None`` as they are, enums by value, paths and others as text, containers deep."""
    if isinstance(value, Enum):  # e.g. anomalib's LearningType
        return jsonable(value.value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    return str(value)


def describe(obj: object) -> dict[str, Any]:
    """``obj.describe()`` made JSON-able, or its class name and a note when it does not describe itself."""
    if obj is None:
        return {}
    if isinstance(obj, Describable):
        return {"class": type(obj).__name__, **jsonable(obj.describe())}
    return {"class": type(obj).__name__, "note": "describes no settings (no describe() method)"}
