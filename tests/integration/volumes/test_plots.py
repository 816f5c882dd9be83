# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The 3D plots leave the user's matplotlib backend alone (a fresh interpreter with ``MPLBACKEND`` set)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_plots_leave_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    code = (
        "import matplotlib, pandas as pd\n"
        "from anomalib_medclip.volumes.plots import write_plots\n"
        "volumes = pd.DataFrame({'volume_id': ['a', 'b', 'c'], 'dice': [0.1, 0.5, 0.9], 'lesion_ml': [1, 2, 3]})\n"
        f"write_plots(__import__('pathlib').Path({str(tmp_path)!r}), volumes, pd.DataFrame())\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("svg")  # a notebook's inline backend would survive too
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "dice_2d_vs_3d.png",
        "dice_vs_distance.png",
        "lesion_size_vs_dice.png",
    }
