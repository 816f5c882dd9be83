# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Start-up hook that makes the stock ``anomalib`` command see the plugin's short names.

anomalib resolves ``--model X`` / ``--data Y`` through ``__subclasses__()`` of its base classes, so the plugin
classes only need to be *imported* before the CLI parses its arguments. anomalib has no plugin entry points, so the
``anomalib_medclip.pth`` file installed next to this module calls :func:`install` at interpreter start. It adds a
meta-path finder that watches imports of ``anomalib`` modules and, once the outermost import that loaded
``anomalib.models`` has finished (so that ``anomalib.engine`` and friends are fully initialised), imports
``anomalib_medclip``.

The module is stdlib-only and does nothing else at start-up: no torch, no anomalib. Set
``ANOMALIB_MEDCLIP_AUTOLOAD=0`` to switch the hook off; full class paths
(``--model anomalib_medclip.models.VanillaCLIP``) and the ``anomalib-medclip`` command work without it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not `from typing import ...`: typing and importlib.abc cost ~20 ms at interpreter start
if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

_PLUGIN = "anomalib_medclip"
_TRIGGER = "anomalib.models"


class _DeferredLoader:
    """Wraps an anomalib module's loader and loads the plugin when the outermost anomalib import completes."""

    depth = 0

    def __init__(self, loader: Loader, finder: _AnomalibWatcher) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _DeferredLoader.depth += 1
        try:
            self._loader.exec_module(module)
        finally:
            _DeferredLoader.depth -= 1
        if _DeferredLoader.depth == 0 and _TRIGGER in sys.modules:
            self._finder.load_plugin()

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)


class _AnomalibWatcher:
    """Meta-path finder that only wraps the loaders of ``anomalib`` modules; it never finds anything itself."""

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, fullname: str, path: object, target: object = None) -> ModuleSpec | None:
        if self._busy or not (fullname == "anomalib" or fullname.startswith("anomalib.")):
            return None
        self._busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy = False
        if spec.loader is not None and not isinstance(spec.loader, _DeferredLoader):
            spec.loader = _DeferredLoader(spec.loader, self)
        return spec

    def load_plugin(self) -> None:
        """Remove the watcher, then import the plugin; a broken plugin only warns, it never breaks anomalib."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        _import_plugin()


def _import_plugin() -> None:
    import importlib
    import warnings

    try:
        importlib.import_module(_PLUGIN)
    except Exception as err:
        warnings.warn(
            f"anomalib_medclip could not be loaded ({type(err).__name__}: {err}); its short names are unavailable. "
            "Set ANOMALIB_MEDCLIP_AUTOLOAD=0 to silence this, or import anomalib_medclip to see the full error.",
            RuntimeWarning,
            stacklevel=2,
        )


def install() -> None:
    """Install the watcher once per interpreter (called from ``anomalib_medclip.pth``)."""
    if os.environ.get("ANOMALIB_MEDCLIP_AUTOLOAD", "1").strip().lower() in {"0", "false", "no", "off"}:
        return
    if any(isinstance(finder, _AnomalibWatcher) for finder in sys.meta_path):
        return
    if _TRIGGER in sys.modules:
        _import_plugin()
        return
    sys.meta_path.insert(0, _AnomalibWatcher())
