# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AACLIP through anomalib: stage 1 moves only the text adapters, stage 2 only the image adapters; stock CLI run.

What every model does through the Engine (train, then test from the checkpoint) is ``test_engine_conformance.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback


class _Snapshots(Callback):
    """The adapters' tensors at the end of every training epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        del trainer
        self.epochs.append({k: v.detach().clone() for k, v in pl_module.model.named_parameters() if "adapter" in k})


def test_each_stage_trains_its_own_adapters(tiny_model, image_folder: Path, tmp_path: Path, toy_folder, cpu_engine):
    model = tiny_model("AACLIP", text_lr=1e-2, image_lr=1e-2)  # text_epochs=1: epoch 0 is stage 1, epoch 1 stage 2
    before = {k: v.detach().clone() for k, v in model.model.named_parameters() if "adapter" in k}
    snapshots = _Snapshots()
    cpu_engine(tmp_path / "run", max_epochs=2, callbacks=[snapshots]).fit(model, datamodule=toy_folder(image_folder))
    first, second = snapshots.epochs

    def moved(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> set[str]:
        return {k.split(".")[0] for k in a if not torch.equal(a[k], b[k])}

    assert moved(before, first) == {"text_adapter"}
    assert moved(first, second) == {"image_adapter"}
    assert {k for k in before if not torch.equal(before[k], second[k])} == set(before)  # every adapter trained


def test_stock_cli_trains_and_tests_on_demo_brats(tmp_path: Path) -> None:
    anomalib = str(Path(sys.executable).parent / "anomalib")
    args = [
        anomalib, "train", "--model", "AACLIP", "--model.backbone", "ViT-tiny-test", "--model.pretrained", "null",
        "--model.image_size", "32", "--model.smoothing_kernel", "3", "--model.text_epochs", "1",
        "--model.image_epochs", "1", "--trainer.max_epochs", "2", "--data", "DemoBraTS",
        "--data.root", str(tmp_path / "demo"), "--data.n_subjects", "6", "--data.num_workers", "0",
        "--data.train_batch_size", "8", "--data.eval_batch_size", "8", "--trainer.accelerator", "cpu",
        "--default_root_dir", str(tmp_path / "results"),
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = (tmp_path / "results").rglob("model.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["anomalib_medclip_model"]["class"] == "AACLIP"
    assert not any(".backbone." in key for key in saved["state_dict"])  # slim: frozen CLIP left out
    assert "image_AUROC" in proc.stdout + proc.stderr
    (summary,) = (tmp_path / "results").rglob("volumes/summary.json")
    assert summary.stat().st_size > 0
