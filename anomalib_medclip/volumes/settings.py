# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The user's choices for the 3D evaluation, validated once, as a value that can be stored and restored.

:class:`EvaluationSettings` holds exactly the options of :class:`~anomalib_medclip.volumes.VolumeEvaluator`. Models
keep ``settings.as_dict()`` in their hyper-parameters and checkpoints, and a restored checkpoint puts it back into the
callback with :meth:`VolumeEvaluator.configure`; both go through the same validation here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

__all__ = ["ADAPTIVE_THRESHOLD", "EvaluationSettings", "ThresholdPolicy"]

ThresholdPolicy = Literal["adaptive", "fixed", "oracle"]
# anomalib's PostProcessor maps the validation F1-optimal threshold to 0.5 on the normalised maps
ADAPTIVE_THRESHOLD = 0.5


def _fail(name: str, value: object, expected: str) -> None:
    msg = f"VolumeEvaluator option {name}={value!r} is invalid; expected {expected}."
    raise ValueError(msg)


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        _fail(name, value, "true or false")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        _fail(name, value, f"a number in [{low}, {high}]")


@dataclass(frozen=True)
class EvaluationSettings:
    """Validated options of the 3D evaluation (see :class:`~anomalib_medclip.volumes.VolumeEvaluator`).

    Raises:
        ValueError: naming the option, its value and what is accepted, for any invalid value.
    """

    threshold_policy: ThresholdPolicy = "adaptive"
    threshold: float = 0.5
    brain_only: bool = True
    smoothing_sigma: float = 0.0
    min_component_voxels: int = 0
    curve_thresholds: int = 1000
    hd95: bool = False
    brats_official: bool = True

    def __post_init__(self) -> None:
        if self.threshold_policy not in get_args(ThresholdPolicy):
            _fail("threshold_policy", self.threshold_policy, "'adaptive', 'fixed' or 'oracle'")
        _check_number("threshold", self.threshold, 0.0, 1.0)  # normalised maps lie in [0, 1]
        _check_number("smoothing_sigma", self.smoothing_sigma, 0.0, math.inf)
        _check_int("min_component_voxels", self.min_component_voxels, 0)
        _check_int("curve_thresholds", self.curve_thresholds, 2)
        for name in ("brain_only", "hd95", "brats_official"):
            _check_bool(name, getattr(self, name))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in constructor order."""
        return tuple(field.name for field in fields(cls))

    def replace(self, **changes: Any) -> EvaluationSettings:
        """A validated copy with some options changed; an unknown option name raises a ``ValueError``."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            msg = f"Unknown VolumeEvaluator option(s) {unknown}; expected some of {list(self.names())}."
            raise ValueError(msg)
        return EvaluationSettings(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """The options as a JSON-able ``dict`` (what models store and :meth:`replace` accepts)."""
        return asdict(self)

    @property
    def base_threshold(self) -> float:
        """The threshold applied without ground truth: ``threshold`` for ``fixed``, else the adaptive 0.5."""
        return float(self.threshold) if self.threshold_policy == "fixed" else ADAPTIVE_THRESHOLD
