# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""anomalib-medclip: CLIP-based zero-/few-shot anomaly detection for medical images, as anomalib plugins.

Importing the package registers its models and datamodules with anomalib: they become ``AnomalibModule`` /
``AnomalibDataModule`` subclasses with unique short names (what ``anomalib train --model X`` resolves) and attributes of
the ``anomalib.models`` / ``anomalib.data`` namespaces (what ``get_model({"class_path": X})`` / ``get_datamodule`` and
so ``anomalib benchmark`` resolve). The ``anomalib_medclip.pth`` start-up hook does this import automatically after
anomalib loads its models; see ``anomalib_medclip_bootstrap``.
"""

from anomalib_medclip import data, models
from anomalib_medclip.demo import DemoImages
from anomalib_medclip.models import (
    AACLIP,
    MVFA,
    VAND,
    AdaCLIP,
    AnomalyCLIP,
    AnoVL,
    AprilGAN,
    MedCrossModalCLIP,
    VanillaCLIP,
    get_model,
    list_models,
)

__all__ = [
    "AACLIP",
    "MVFA",
    "VAND",
    "AdaCLIP",
    "AnoVL",
    "AnomalyCLIP",
    "AprilGAN",
    "DemoImages",
    "MedCrossModalCLIP",
    "VanillaCLIP",
    "data",
    "get_model",
    "list_models",
    "register_anomalib_names",
]
__version__ = "0.1.0"


def register_anomalib_names() -> None:
    """Expose the plugin classes in the ``anomalib.models`` / ``anomalib.data`` namespaces (done on import).

    anomalib's ``get_model({"class_path": ...})`` and ``get_datamodule`` (used by ``anomalib benchmark``) only look in
    those namespaces; ``get_model("VanillaCLIP")`` searches subclasses and works without this. Idempotent.
    """
    import importlib

    # not `anomalib.models` as an attribute: the start-up hook imports the plugin while ``anomalib.models`` is still
    # finishing its import, before Python binds it on its parent package
    anomalib_models, anomalib_data = (importlib.import_module(f"anomalib.{name}") for name in ("models", "data"))
    for name in models.__all__:
        if name[0].isupper():
            setattr(anomalib_models, name, getattr(models, name))
    for obj in [DemoImages, *(getattr(data, name) for name in data.__all__)]:
        if isinstance(obj, type) and issubclass(obj, anomalib_data.AnomalibDataModule):
            setattr(anomalib_data, obj.__name__, obj)


register_anomalib_names()
