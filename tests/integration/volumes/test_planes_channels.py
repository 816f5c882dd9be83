# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Tri-planar inference with the UAD chain from the stock CLI, and 2.5D / multi-sequence inputs for every model.

The acceptance run of issue 15 on generated BraTS-MET-style data (``DemoBraTS``, 3 subjects): ``anomalib test`` with
the three planes and ``postprocess uad`` writes fused maps on the scan's grid, and ``summary.json`` names the planes,
the fusion, the chain and the threshold policy with the threshold learnt on the validation volumes. Then every
registered model runs through anomalib's ``Engine`` with ``channels: sequences`` and ``channels: adjacent``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from lightning.pytorch import Callback

from anomalib_medclip.data import DemoBraTS
from anomalib_medclip.models import list_models
from tests.conftest import TINY

ANOMALIB = shutil.which("anomalib") or str(Path(sys.executable).parent / "anomalib")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planes") / "demo"
    DemoBraTS(root=root, n_subjects=3, num_workers=0).prepare_data()
    return root


def _summary(root: Path) -> tuple[Path, dict]:
    (path,) = root.rglob("volumes/summary.json")
    return path, json.loads(path.read_text())


def _cli(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cli_tri_planar_uad_writes_fused_maps_and_records_the_chain(demo_root: Path, tmp_path: Path) -> None:
    """``anomalib train`` (fit validates: the val_dice threshold is learnt, then tested), then ``anomalib test``."""
    args = [
        "--model", "AdaCLIP", *(f"--model.{k}={'null' if v is None else v}" for k, v in TINY.items()),
        "--model.object_name", "toy", "--model.k_clusters", "2",
        "--data", "DemoBraTS", "--data.root", str(demo_root), "--data.n_subjects", "3", "--data.num_workers", "0",
        "--data.eval_batch_size", "64", "--data.planes", "[axial,coronal,sagittal]",
        "--model.volume_evaluator.postprocess", "uad", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    _cli(
        [ANOMALIB, "train", *args, "--trainer.max_epochs", "1", "--default_root_dir", str(tmp_path / "train")], tmp_path
    )
    summary_path, summary = _summary(tmp_path / "train")
    assert summary["planes"] == ["axial", "coronal", "sagittal"]
    assert summary["fusion"] == "mean"
    assert summary["postprocess"] == "uad"
    assert summary["threshold_policy"] == "val_dice"
    assert 0.0 <= summary["threshold"] <= 1.0  # learnt on the validation volumes before testing
    assert summary["chain"] == [
        "slice-wise brain-mask erosion, auto iterations (slice height // 25)",
        "3D median filter, kernel 5",
        "threshold: best pooled Dice of the validation volumes (0.01 grid)",
        "remove 26-connected components under 8 voxels",
    ]
    assert summary["data"]["planes"] == ["axial", "coronal", "sagittal"]
    for volume_id in summary["volume_ids"]:
        scan = nib.load(demo_root / volume_id / f"{volume_id}-t2w.nii.gz")
        fused = nib.load(summary_path.parent / f"{volume_id}_anomaly_map.nii.gz")
        assert fused.shape == scan.shape
        assert np.allclose(fused.affine, scan.affine)
        assert np.asanyarray(fused.dataobj).any()
    (ckpt,) = (tmp_path / "train").rglob("model.ckpt")
    _cli([ANOMALIB, "test", *args, "--ckpt_path", str(ckpt), "--default_root_dir", str(tmp_path / "test")], tmp_path)
    _, again = _summary(tmp_path / "test")
    assert again["threshold"] == summary["threshold"]  # restored from the checkpoint
    assert again["volume_dice"] == summary["volume_dice"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_on_sequences_and_adjacent_slices(
    name: str, demo_root: Path, tmp_path: Path, tiny_model, cpu_engine
) -> None:
    for channels, sequences in (("sequences", ["t2f", "t1c", "t2w"]), ("adjacent", None)):
        datamodule = DemoBraTS(
            root=demo_root, n_subjects=3, num_workers=0, eval_batch_size=64, eval_slices="lesion",
            channels=channels, sequences=sequences,
        )  # fmt: skip
        engine = cpu_engine(tmp_path / channels)
        results = engine.test(tiny_model(name), datamodule=datamodule)[0]
        assert np.isfinite(results["pixel_AUROC"])
        (summary_path,) = (tmp_path / channels).rglob("volumes/summary.json")
        summary = json.loads(summary_path.read_text())
        assert summary["channels"] == channels
        assert summary["data"]["channel_scaling"]


def test_engine_trains_on_three_planes(demo_root: Path, tmp_path: Path, tiny_model, cpu_engine) -> None:
    """``train_planes``: the training batches hold each plane's slices (one plane per batch), every slice once."""
    seen: list[tuple[str, str, int]] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ARG002
            assert len(set(batch.plane)) == 1
            seen.extend(zip(batch.volume_id, batch.plane, batch.slice_index.tolist(), strict=True))

    datamodule = DemoBraTS(
        root=demo_root, n_subjects=3, num_workers=0, train_batch_size=64, eval_batch_size=64, slices="lesion",
        eval_slices="lesion", train_planes=["axial", "coronal", "sagittal"],
    )  # fmt: skip
    engine = cpu_engine(tmp_path, max_epochs=1, callbacks=[Record()])
    model = tiny_model("MedCrossModalCLIP")
    engine.fit(model, datamodule=datamodule)
    train = datamodule.train_data.samples
    assert set(train.plane) == {"axial", "coronal", "sagittal"}
    assert sorted(seen) == sorted(zip(train.volume_id, train.plane, train.slice_index.tolist(), strict=True))
    engine.test(model, datamodule=datamodule)
    _, summary = _summary(tmp_path)
    assert summary["data"]["train_planes"] == ["axial", "coronal", "sagittal"]  # the report says how it was trained
    assert "planes" not in summary["data"]  # evaluation stays axial
