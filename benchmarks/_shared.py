# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Helpers the side-by-side benchmarks against the original implementations share (run from ``benchmarks/``)."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run (CUDA work waited for)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def import_original(root: Path, *names: str) -> list[ModuleType]:
    """Import modules of an original checked out at ``root``, then forget its modules (originals share names)."""
    sys.path.insert(0, str(root))
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(root))
        for name in [n for n, m in sys.modules.items() if str(getattr(m, "__file__", "")).startswith(str(root))]:
            del sys.modules[name]
