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


def test_killed_test_run_leaves_only_whole_files(tmp_path: Path) -> None:
    """``anomalib test`` on DemoBraTS killed right after its first volume is written: every NIfTI left loads."""
    anomalib = str(Path(sys.executable).parent / "anomalib")
    args = [
        anomalib, "train", "--model", "VanillaCLIP", "--model.backbone", "ViT-tiny-test", "--model.pretrained", "null",
        "--model.image_size", "32", "--data", "DemoBraTS", "--data.root", str(tmp_path / "demo"),
        "--data.n_subjects", "6", "--data.num_workers", "0", "--data.eval_batch_size", "4",
        "--trainer.accelerator", "cpu", "--default_root_dir", str(tmp_path / "results"),
    ]  # fmt: skip
    child = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and not list(tmp_path.rglob("volumes/*_anomaly_map.nii.gz")):
            assert child.poll() is None, "the run ended before writing a volume"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    (volumes,) = {p.parent for p in tmp_path.rglob("volumes/*.nii.gz")}
    written = [p for p in volumes.iterdir() if not p.name.startswith(".")]
    assert written
    for path in written:
        if path.name.endswith(".nii.gz"):
            assert np.isfinite(np.asanyarray(nib.load(path).dataobj)).all(), path
    assert not (volumes / "summary.json").exists()  # killed before the end: no summary of a partial run
