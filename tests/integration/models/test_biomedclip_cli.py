# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The stock ``anomalib train`` on DemoBraTS with a BiomedCLIP-shaped backbone (timm ViT + BERT), for a model that
fine-tunes image blocks (VanillaCLIP) and one that learns deep text prompts (AnomalyCLIP, after [CLS])."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ANOMALIB = shutil.which("anomalib") or str(Path(sys.executable).parent / "anomalib")
MODELS = {"VanillaCLIP": ["--model.finetune_layers", "1"], "AnomalyCLIP": ["--model.deep_depth", "2"]}


@pytest.mark.parametrize("name", MODELS)
def test_stock_cli_trains_and_tests_on_biomedclip_shape(name: str, tmp_path: Path) -> None:
    args = [
        ANOMALIB, "train", "--model", name, "--model.backbone", "BiomedCLIP-tiny-test", "--model.pretrained", "null",
        "--model.image_size", "32", *MODELS[name], "--data", "DemoBraTS", "--data.root", str(tmp_path / "demo"),
        "--data.n_subjects", "3", "--data.num_workers", "0", "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1", "--default_root_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    state = torch.load(ckpt, weights_only=False)
    assert state["anomalib_medclip_backbones"]["model.backbone"]["name"] == "BiomedCLIP-tiny-test"
    (summary,) = (tmp_path / "run").rglob("volumes/summary.json")
    assert json.loads(summary.read_text())["model"]["backbone"]["name"] == "BiomedCLIP-tiny-test"
