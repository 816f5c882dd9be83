# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP through anomalib's Engine: trains at batch 4, slim checkpoints reload, released weights are zero-shot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib import LearningType

from anomalib_medclip import AdaCLIP

ARGS = {"backbone": "ViT-B-16", "pretrained": None, "image_size": 32, "object_name": "toy"}


def test_batched_training_and_checkpoint_reload(image_folder: Path, tmp_path: Path, toy_folder, cpu_engine) -> None:
    model = AdaCLIP(**ARGS)
    assert model.learning_type == LearningType.ONE_CLASS
    before = {k: v.clone() for k, v in model.model.named_parameters() if v.requires_grad}
    first = cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))[0]
    moved = {k for k, v in model.model.named_parameters() if k in before and not torch.equal(v, before[k])}
    assert moved == set(before) - {"text_prompter.static_prompts.0"}  # unused by the original's forward too
    assert {"image_AUROC", "pixel_AUROC"} <= first.keys()

    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    state = torch.load(ckpt, weights_only=False)
    assert not [key for key in state["state_dict"] if ".clip." in key]
    assert state["object_name"] == "toy"
    fresh = AdaCLIP(**{**ARGS, "object_name": None})
    again = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)[0]
    assert again == pytest.approx(first, abs=1e-6)
    assert fresh.model.object_name == "toy"


def test_official_checkpoint_makes_it_zero_shot(tmp_path: Path) -> None:
    path = AdaCLIP(**ARGS, seed=3).model.save_official_checkpoint(tmp_path / "pretrained_all.pth")
    model = AdaCLIP(**ARGS, official_checkpoint=str(path))
    assert model.learning_type == LearningType.ZERO_SHOT
    assert model.configure_optimizers() is None
    optimizer = AdaCLIP(**ARGS).configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-2, (0.5, 0.999), 0.01)
    learnable = sum(p.numel() for name, p in model.model.named_parameters() if not name.startswith("backbone."))
    assert sum(p.numel() for p in group["params"]) == learnable
    assert model.model.backbone.info.quick_gelu is False  # the original builds CLIP(**config): nn.GELU
