# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""A fresh interpreter offline without cached weights fails fast with the fix in the last line (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def test_offline_without_cache_fails_fast_with_fix(tmp_path: Path) -> None:
    code = "from anomalib_medclip import VanillaCLIP\nVanillaCLIP(backbone='ViT-B-16', pretrained='openai')\n"
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
    assert "'ViT-B-16'" in last
    assert "pretrained='openai'" in last
    assert "HF_HUB_OFFLINE" in last
    assert "local checkpoint file" in last
