# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""DDP: two CPU processes (gloo) give the same 3D metrics, tables and files as one process; bf16-mixed runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DistributedSampler

from anomalib_medclip.data.volume_slices import VolumeBatchSampler

RUNNER = Path(__file__).with_name("ddp_run.py")


def _tree(root: Path) -> Path:
    """Six BraTS-MET cases of 7-9 axial slices (so batches of 3 split a test volume between two processes)."""
    rng = np.random.default_rng(0)
    for i in range(6):
        shape = (18, 16, 7 + i % 3)
        grid = np.indices(shape).astype(float)
        centre = (np.array(shape)[:, None, None, None] - 1) / 2
        brain = (((grid - centre) / (np.array(shape)[:, None, None, None] / 2.2)) ** 2).sum(0) < 1
        image = np.where(brain, 0.4 + 0.2 * rng.random(shape), 0.0).astype(np.float32)
        seg = np.zeros(shape, np.uint8)
        if i % 3:
            seg[6:10, 5:9, 2 + i % 3 : 5 + i % 3] = 3
            image[seg > 0] = 1.0
        case = root / f"BraTS-MET-0000{i}-000"
        case.mkdir(parents=True)
        affine = np.diag([1.0, 1.2, 1.5, 1.0])
        nib.save(nib.Nifti1Image(image, affine), case / f"{case.name}-t2w.nii.gz")
        nib.save(nib.Nifti1Image(seg, affine), case / f"{case.name}-seg.nii.gz")
    return root


def _batches(samples: pd.DataFrame, rank: int, replicas: int = 2) -> list[list[int]]:
    sampler = DistributedSampler(range(len(samples)), num_replicas=replicas, rank=rank, shuffle=False)
    return list(VolumeBatchSampler(samples, 3, num_workers=2, sampler=sampler))


def _files(root: Path) -> dict[str, Path]:
    (folder,) = {p.parent.parent for p in root.rglob("volumes/summary.json")}
    return {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file() and p.suffix != ".ckpt"}


def _approx_equal(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _approx_equal(a[key], b[key])
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-6, nan_ok=True)
    else:
        assert a == b


def _run_here(data: Path, out: Path, precision: str = "32-true", variant: str = "axial") -> None:
    """The runner's single-process test in this process (its thread setting undone afterwards)."""
    spec = importlib.util.spec_from_file_location("ddp_run", RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    threads = torch.get_num_threads()
    try:
        runner.main(str(data), str(out), 1, precision, variant)
    finally:
        torch.set_num_threads(threads)


def _two_processes_equal_one(tmp_path: Path, variant: str = "axial") -> dict[str, Path]:
    """Run the single-process and the two-process test; every output file must agree. Returns the first's files."""
    data = _tree(tmp_path / "brats")
    _run_here(data, tmp_path / "one", variant=variant)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(data), str(tmp_path / "two"), "2", "32-true", variant],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys()  # same NIfTI maps, tables, plots and slice images; nothing written twice
    names = sorted(one)
    assert sum(n.endswith("_anomaly_map.nii.gz") for n in names) == 3
    assert sum(n.startswith("images/") for n in names) > 3
    _approx_equal(*(json.loads(Path(tmp_path / run / "results.json").read_text()) for run in ("one", "two")))
    summary = "volumes/summary.json"
    _approx_equal(json.loads(one[summary].read_text()), json.loads(two[summary].read_text()))
    table = "volumes/metrics_per_volume.csv"
    pd.testing.assert_frame_equal(pd.read_csv(one[table]), pd.read_csv(two[table]), atol=1e-6)
    for name in (n for n in names if n.endswith(".nii.gz")):
        a, b = nib.load(one[name]), nib.load(two[name])
        assert a.get_data_dtype() == b.get_data_dtype()
        assert np.array_equal(a.affine, b.affine)
        np.testing.assert_allclose(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj), atol=1e-6)
    return one


def test_two_processes_equal_one(tmp_path: Path) -> None:
    _two_processes_equal_one(tmp_path)
    data = tmp_path / "brats"
    from anomalib_medclip.data import BraTS

    datamodule = BraTS(data, eval_batch_size=3, num_workers=0, test_ratio=0.5, val_ratio=0.25)
    datamodule.setup()
    samples = datamodule.test_data.samples
    held = [{samples.volume_id[i] for b in _batches(samples, rank) for i in b} for rank in range(2)]
    assert held[0] & held[1], "a test volume was split between the two processes"


def test_tri_planar_uad_two_processes_equal_one(tmp_path: Path) -> None:
    """Every plane of a volume regrouped on rank 0, and the val_dice threshold learnt under DDP, as in one process."""
    one = _two_processes_equal_one(tmp_path, "tri-planar-uad")
    summary = json.loads(one["volumes/summary.json"].read_text())
    assert summary["planes"] == ["axial", "coronal", "sagittal"]
    assert summary["threshold_policy"] == "val_dice"
    assert isinstance(summary["threshold"], float)


def test_bf16_mixed_through_the_volume_pipeline(tmp_path: Path) -> None:
    """bf16 autocast on CPU: the model hands float32 maps on; tables, NIfTI maps and summary are complete."""
    _run_here(_tree(tmp_path / "brats"), tmp_path / "bf16", "bf16-mixed")
    files = _files(tmp_path / "bf16")
    summary = json.loads(files["volumes/summary.json"].read_text())
    assert summary["volumes"] == 3
    assert 0.5 < summary["voxel_auroc"] <= 1  # random weights still rank the bright lesion high (0.90 at 32-true)
    maps = [nib.load(p) for n, p in files.items() if n.endswith("_anomaly_map.nii.gz")]
    assert len(maps) == 3
    assert all(m.get_data_dtype() == np.float32 and np.isfinite(m.get_fdata()).all() for m in maps)
