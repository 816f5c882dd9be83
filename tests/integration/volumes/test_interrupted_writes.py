# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""A run killed while it writes volumes leaves whole NIfTI files or none (issue: bad input, runtime faults).

A child process writes anomaly maps with the package's writer in a loop and is killed with SIGKILL (no clean-up
runs) at several moments; every result file left behind must load completely. Only hidden temporary files
(``.<name>.<random>.nii.gz``, never a result name) may be partial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

WRITER = """
import sys
from pathlib import Path
import numpy as np
from anomalib_medclip.volumes.stacking import write_nifti
out = Path(sys.argv[1])
rng = np.random.default_rng(0)
volume = rng.random((240, 240, 155), dtype=np.float32)  # BraTS grid; gzip of random data is slow: a long write
print("ready", flush=True)
for index in range(1000):
    write_nifti(out / f"case{index:03d}_anomaly_map.nii.gz", volume, np.eye(4))
"""


@pytest.mark.parametrize("delay", [0.5, 1.7, 3.1])
def test_killed_writer_leaves_only_whole_files(tmp_path: Path, delay: float) -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    results = sorted(tmp_path.glob("case*_anomaly_map.nii.gz"))
    for path in results:
        data = np.asanyarray(nib.load(path).dataobj)  # reads and decompresses the whole file
        assert data.shape == (240, 240, 155), path
    leftovers = [p.name for p in tmp_path.iterdir() if p not in results]
    assert all(name.startswith(".case") and name.count(".nii.gz") == 2 for name in leftovers), leftovers
    assert len(leftovers) <= 1  # at most the one file that was being written
