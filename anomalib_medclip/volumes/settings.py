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

__all__ = ["ADAPTIVE_THRESHOLD", "UAD_PRESET", "EvaluationSettings", "Fusion", "Postprocess", "ThresholdPolicy"]

ThresholdPolicy = Literal["adaptive", "fixed", "oracle", "val_dice"]
Postprocess = Literal["none", "uad"]
Fusion = Literal["mean", "max"]
# anomalib's PostProcessor maps the validation F1-optimal threshold to 0.5 on the normalised maps
ADAPTIVE_THRESHOLD = 0.5
# The post-processing chain of the unsupervised brain-MRI anomaly-segmentation literature (pDDPM's evaluation code,
# FinnBehrendt/patched-Diffusion-Models-UAD src/utils/utils_eval.py; shared/notes/medical-data.md section 7):
# slice-wise brain-mask erosion with in-plane size // 25 iterations, 3D median filter of kernel 5, the Dice-optimal
# threshold searched on the validation volumes, removal of 26-connected components of <= 7 voxels.
UAD_PRESET: dict[str, Any] = {
    "brain_erosion": "auto",
    "median_kernel": 5,
    "threshold_policy": "val_dice",
    "min_component_voxels": 8,
}


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
    brain_erosion: int | str = 0
    median_kernel: int = 0
    postprocess: Postprocess = "none"
    fusion: Fusion = "mean"

    def __post_init__(self) -> None:
        if self.threshold_policy not in get_args(ThresholdPolicy):
            _fail("threshold_policy", self.threshold_policy, "'adaptive', 'fixed', 'oracle' or 'val_dice'")
        if self.brain_erosion != "auto":
            _check_int("brain_erosion", self.brain_erosion, 0)
        _check_int("median_kernel", self.median_kernel, 0)
        if self.median_kernel and self.median_kernel % 2 == 0:
            _fail("median_kernel", self.median_kernel, "0 (off) or an odd kernel size >= 1")
        if self.postprocess not in get_args(Postprocess):
            _fail("postprocess", self.postprocess, "'none' or 'uad'")
        if self.fusion not in get_args(Fusion):
            _fail("fusion", self.fusion, "'mean' or 'max'")
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

    def chain(self) -> EvaluationSettings:
        """The settings that apply.

        ``postprocess='uad'`` puts the :data:`UAD_PRESET` values into every chain option left at its default (an
        option given another value keeps it); ``'none'`` changes nothing.
        """
        if self.postprocess != "uad":
            return self
        defaults = {field.name: field.default for field in fields(self)}
        preset = {name: value for name, value in UAD_PRESET.items() if getattr(self, name) == defaults[name]}
        return self.replace(**preset, postprocess="none")

    def erosion_iterations(self, in_plane: tuple[int, int]) -> int:
        """Iterations of the slice-wise brain-mask erosion; ``auto``: pDDPM's slice height // 25 (native grid)."""
        return in_plane[0] // 25 if self.brain_erosion == "auto" else int(self.brain_erosion)

    @property
    def base_threshold(self) -> float:
        """The threshold applied without ground truth: ``threshold`` for ``fixed``, else the adaptive 0.5."""
        return float(self.threshold) if self.threshold_policy == "fixed" else ADAPTIVE_THRESHOLD
