# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Parity tests against the original implementations, read from ``$MEDCLIP_ORIGINALS`` (see ``tests/README.md``).

The originals are not part of this repository. Each test asks for the directory of one original; when the variable is
unset or the directory is absent the test is skipped with a message that says what to provide.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

ORIGINALS_ENV = "MEDCLIP_ORIGINALS"


@pytest.fixture(scope="session")
def original_repo() -> Callable[[str], Path]:
    """``original_repo("zqhang+AnomalyCLIP")``: the extracted original, or skip saying how to provide it."""

    def find(name: str) -> Path:
        root = os.environ.get(ORIGINALS_ENV)
        if not root:
            pytest.skip(f"parity test: set {ORIGINALS_ENV} to a directory holding '{name}/' (see tests/README.md)")
        path = Path(root) / name
        if not path.is_dir():
            pytest.skip(f"parity test: {path} not found (see tests/README.md for how to extract the originals)")
        return path

    return find


def _lives_under(module: ModuleType, root: Path) -> bool:
    """Whether a module, or a namespace package (no ``__file__``, e.g. AA-CLIP's ``model/``), comes from ``root``."""
    path = getattr(module, "__path__", None)
    try:
        places = [getattr(module, "__file__", None), *(path or [])]
    except TypeError:  # not a package path (e.g. torch.classes)
        places = [getattr(module, "__file__", None)]
    return any(isinstance(place, str) and place.startswith(str(root)) for place in places)


@pytest.fixture(scope="session")
def import_original() -> Callable[..., SimpleNamespace]:
    """``import_original(root, "model", "utils")``: an original's top-level modules, imported by their plain names.

    The originals import each other by plain names (``model``, ``utils``, ``prompt_ensemble``) that collide between
    repositories, so the names are taken out of ``sys.modules`` again afterwards (the returned modules stay usable).
    """

    def load(root: Path, *names: str) -> SimpleNamespace:
        sys.path.insert(0, str(root))
        try:
            modules = {name: importlib.import_module(name) for name in names}
        finally:
            sys.path.remove(str(root))
            for name, module in list(sys.modules.items()):
                if isinstance(module, ModuleType) and _lives_under(module, root):
                    del sys.modules[name]
        return SimpleNamespace(**{name.replace(".", "_"): module for name, module in modules.items()})

    return load


@pytest.fixture(scope="module")
def cpu_only_to() -> Iterator[None]:
    """Originals that move an unused tensor to ``'cuda'`` (MVFA's and VAND's vision transformers) run on the CPU."""
    patch = pytest.MonkeyPatch()
    if not torch.cuda.is_available():
        original_to = torch.Tensor.to
        patch.setattr(torch.Tensor, "to", lambda t, *a, **k: t if a[:1] == ("cuda",) else original_to(t, *a, **k))
    yield
    patch.undo()
