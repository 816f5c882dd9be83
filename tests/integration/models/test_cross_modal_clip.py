# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MedCrossModalCLIP through anomalib's Engine: trains, checkpoint holds only the blocks, reloads identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib import LearningType

from anomalib_medclip import MedCrossModalCLIP

ARGS = {"backbone": "ViT-B-16", "pretrained": None, "image_size": 32, "object_name": "toy"}


def test_train_then_reload_from_slim_checkpoint(image_folder: Path, tmp_path: Path, toy_folder, cpu_engine) -> None:
    model = MedCrossModalCLIP(**ARGS, finetune_layers=1)
    assert model.learning_type == LearningType.ONE_CLASS
    before = {k: v.clone() for k, v in model.model.named_parameters() if v.requires_grad}
    first = cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))[0]
    moved = {k for k, v in model.model.named_parameters() if k in before and not torch.equal(v, before[k])}
    assert {
        "b_t.2.weight",
        "b_v.weight",
        "b_vt.0.weight",
        "backbone.clip.visual.transformer.resblocks.11.mlp.c_fc.weight",
    } <= moved

    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    state = torch.load(ckpt, weights_only=False)
    clip_keys = {k for k in state["state_dict"] if ".clip." in k}
    assert clip_keys
    assert all(".resblocks.11." in k for k in clip_keys)
    assert state["object_name"] == "toy"

    fresh = MedCrossModalCLIP(**{**ARGS, "object_name": None}, finetune_layers=1)
    again = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)[0]
    assert again == pytest.approx(first, abs=1e-6)
    assert fresh.model.object_name == "toy"


def test_optimizer_has_two_learning_rates() -> None:
    model = MedCrossModalCLIP(**ARGS, finetune_layers=2, lr=1e-3, clip_lr=1e-5)
    groups = model.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-5]
    assert sum(p.numel() for p in groups[1]["params"]) == sum(
        p.numel() for b in model.model.backbone.clip.visual.transformer.resblocks[-2:] for p in b.parameters()
    )
