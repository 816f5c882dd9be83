# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Integration tests run anomalib's Engine, the CLI, notebooks and DDP: what one test builds must not outlive it."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True)
def _release_memory():
    """Collect after each test: trainers, models and datamodules hold reference cycles that refcounting leaves."""
    yield
    gc.collect()
