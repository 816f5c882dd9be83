# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFA end to end on a generated MVFA-release tree: the stock CLI under both protocols, and the zero-shot fit's reads.

The tree (``mvfa_tree``, tests/conftest.py) has Liver and Brain (masks) and Chest (labels only), each with ``valid/``
and ``test/`` (MVFA's release has no ``train/``), and MVFA's ``fewshot_seed/Liver/4-shot.txt``. Zero-shot
(``leave_one_out``) trains on the Brain and Chest test images and must not read a Liver image before fit ends; 4-shot
trains on the 4 + 4 listed Liver images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine

from anomalib_medclip import MVFA
from anomalib_medclip.data import MedBMAD
from anomalib_medclip.data import bmad as bmad_module

ANOMALIB = shutil.which("anomalib") or str(Path(sys.executable).parent / "anomalib")
TINY = {"backbone": "ViT-tiny-test", "pretrained": None, "image_size": 32}


def _cli(root: Path, tmp: Path, *protocol: str) -> subprocess.CompletedProcess:
    args = [
        ANOMALIB, "train", "--model", "MVFA", *(f"--model.{k}={'null' if v is None else v}" for k, v in TINY.items()),
        "--data", "MedBMAD", "--data.root", str(root), "--data.category", "Liver", *protocol,
        "--data.num_workers", "0", "--data.train_batch_size", "4", "--data.eval_batch_size", "4",
        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--default_root_dir", str(tmp),
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=tmp, env=dict(os.environ), capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("protocol", [["--data.leave_one_out", "true"], ["--data.shots", "4"]], ids=["zero", "4shot"])
def test_stock_cli_trains_and_tests(mvfa_tree: Path, tmp_path: Path, protocol: list[str]) -> None:
    proc = _cli(mvfa_tree, tmp_path, *protocol)
    output = proc.stdout + proc.stderr
    assert "image_AUROC" in output
    assert "pixel_AUROC" in output  # Liver has masks
    (checkpoint,) = tmp_path.rglob("model.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert not any(key.startswith("model.backbone.") for key in saved["state_dict"])  # slim
    few_shot = protocol[0] == "--data.shots"
    assert saved["state_dict"]["model.support_images"].shape[0] == (4 if few_shot else 0)
    selection = saved["mvfa_selection"]["selection"]
    assert selection.startswith("last epoch (leave_one_out") if not few_shot else selection == "validation split"


def test_zero_shot_fit_never_reads_the_target_category(mvfa_tree: Path, tmp_path: Path, monkeypatch) -> None:
    reads: list[tuple[str, str]] = []
    read = bmad_module.read_med_image
    stage = {"now": "fit"}
    monkeypatch.setattr(
        bmad_module, "read_med_image", lambda path: reads.append((stage["now"], str(path))) or read(path)
    )
    model = MVFA(**TINY)
    datamodule = MedBMAD(mvfa_tree, "Liver", leave_one_out=True, num_workers=0, train_batch_size=4, eval_batch_size=4)
    engine = Engine(max_epochs=1, accelerator="cpu", default_root_dir=tmp_path, logger=False)
    engine.fit(model, datamodule=datamodule)
    stage["now"] = "test"
    engine.test(model, datamodule=datamodule)
    fit_reads = [path for when, path in reads if when == "fit"]
    assert len(fit_reads) == 12  # the Brain and Chest test images, once each
    assert not [path for path in fit_reads if "Liver_AD" in path]
    assert any("Liver_AD" in path for when, path in reads if when == "test")  # thresholds (valid) and test
    assert model.describe()["model_selection"]["selection"].startswith("last epoch (leave_one_out")
    assert not torch.isnan(model.post_processor.image_min)  # calibrated on Liver valid/ before test, after fit
