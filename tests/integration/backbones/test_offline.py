# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""A fresh interpreter offline without cached weights fails fast with the fix in the last line (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


CASES = [("ViT-B-16", "openai"), (BIOMEDCLIP, "(weights from the hub id)")]


@pytest.mark.parametrize(("backbone", "pretrained"), CASES, ids=["openai", "biomedclip"])
def test_offline_without_cache_fails_fast_with_fix(backbone: str, pretrained: str, tmp_path: Path) -> None:
    code = f"from anomalib_medclip import VanillaCLIP\nVanillaCLIP(backbone='{backbone}', pretrained='openai')\n"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "OPEN_CLIP_CACHE": str(tmp_path / "clip"),
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 30
    last = proc.stderr.strip().splitlines()[-1]
    assert "WeightsUnavailableError" in last
    assert f"'{backbone}'" in last
    assert f"pretrained='{pretrained}'" in last
    assert "HF_HUB_OFFLINE" in last
    assert ("BiomedCLIP-tiny-test" if backbone == BIOMEDCLIP else "local checkpoint file") in last
