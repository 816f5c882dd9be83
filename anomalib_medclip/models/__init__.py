# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The package's anomalib models, each a direct ``AnomalibModule`` subclass with a unique short name."""

from anomalib.models.components import AnomalibModule

from anomalib_medclip.models.aa_clip import AACLIP
from anomalib_medclip.models.ada_clip import AdaCLIP
from anomalib_medclip.models.ano_vl import AnoVL
from anomalib_medclip.models.anomaly_clip import AnomalyCLIP
from anomalib_medclip.models.april_gan import VAND, AprilGAN
from anomalib_medclip.models.cross_modal_clip import MedCrossModalCLIP
from anomalib_medclip.models.mvfa import MVFA
from anomalib_medclip.models.vanilla_clip import VanillaCLIP

__all__ = [
    "AACLIP",
    "MVFA",
    "VAND",
    "AdaCLIP",
    "AnoVL",
    "AnomalyCLIP",
    "AprilGAN",
    "MedCrossModalCLIP",
    "VanillaCLIP",
    "get_model",
    "list_models",
]

_MODELS: dict[str, type[AnomalibModule]] = {
    cls.__name__: cls
    for cls in (AACLIP, AdaCLIP, AnoVL, AnomalyCLIP, AprilGAN, MVFA, MedCrossModalCLIP, VAND, VanillaCLIP)
}


def list_models() -> list[str]:
    """Short names of the package's models."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs: object) -> AnomalibModule:
    """Instantiate a model of this package by short name (case-insensitive), e.g. ``get_model("VanillaCLIP")``."""
    matches = [cls for key, cls in _MODELS.items() if key.lower() == name.lower()]
    if not matches:
        msg = f"Unknown anomalib_medclip model '{name}'. Available: {list_models()}."
        raise ValueError(msg)
    return matches[0](**kwargs)
