# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Atomic file writes: a crash or an interrupt never leaves a half-written result file behind."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["claim_output_dir", "write_atomic"]


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file is created with the process's umask (as ``open`` would create ``path``), not ``mkstemp``'s
    owner-only mode, so results in a shared folder stay readable by the group.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def claim_output_dir(base: Path) -> Path:
    """Create and return a folder no other run writes to: ``base``, else ``base_v1``, ``base_v2``, ...

    The folder is created with an exclusive ``mkdir``, so two runs started at once into one results folder (anomalib
    reuses a training run's workspace for every later ``test``/``predict``) never share it, and a folder holding
    another run's outputs is never added to.
    """
    base.parent.mkdir(parents=True, exist_ok=True)
    for version in range(10_000):
        candidate = base if version == 0 else base.with_name(f"{base.name}_v{version}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    msg = f"{base.parent} holds 10000 output folders named {base.name}*: choose another results folder."
    raise FileExistsError(msg)
