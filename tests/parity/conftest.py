# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Parity tests against the original implementations, read from ``$MEDCLIP_ORIGINALS`` (see ``tests/README.md``).

The originals are not part of this repository. Each test asks for the directory of one original; when the variable is
unset or the directory is absent the test is skipped with a message that says what to provide.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

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
