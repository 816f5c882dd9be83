# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP through anomalib's Engine: prompts train, slim checkpoints reload, released prompts are zero-shot."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from anomalib import LearningType
from anomalib.data import Folder

from anomalib_medclip import AnomalyCLIP

ARGS = {"backbone": "ViT-B-16", "pretrained": None, "image_size": 32}


def test_training_moves_only_the_prompts_and_checkpoint_reloads(
    image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = AnomalyCLIP(**ARGS, lr=1e-2)
    assert model.learning_type == LearningType.ONE_CLASS
    before = {k: v.clone() for k, v in model.model.named_parameters()}
    first = cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))[0]
    moved = {k for k, v in model.model.named_parameters() if not torch.equal(v, before[k])}
    assert moved == {"ctx_pos", "ctx_neg", *(f"deep_prompts.{i}" for i in range(8))}
    assert {"image_AUROC", "pixel_AUROC"} <= first.keys()

    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert not [key for key in state if ".clip." in key]
    assert ckpt.stat().st_size < 2**20
    again = cpu_engine(tmp_path / "again").test(
        AnomalyCLIP(**ARGS), datamodule=toy_folder(image_folder), ckpt_path=ckpt
    )
    assert again[0] == pytest.approx(first, abs=1e-6)


def test_batches_without_masks_train_the_image_term(image_folder: Path, tmp_path: Path, cpu_engine, caplog) -> None:
    datamodule = Folder(
        name="toy", root=image_folder, normal_dir="good", abnormal_dir="bad", train_batch_size=4, eval_batch_size=4,
        num_workers=0, seed=0,
    )  # fmt: skip
    model = AnomalyCLIP(**ARGS)
    before = model.model.ctx_pos.clone()
    with caplog.at_level(logging.WARNING):
        cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=datamodule)
    assert "only the image loss is trained" in caplog.text
    assert not torch.equal(model.model.ctx_pos, before)


def test_official_checkpoint_makes_it_zero_shot(tmp_path: Path) -> None:
    source = AnomalyCLIP(**ARGS, seed=3)
    path = source.model.save_official_checkpoint(tmp_path / "epoch_15.pth")
    model = AnomalyCLIP(**ARGS, official_checkpoint=str(path))
    assert model.learning_type == LearningType.ZERO_SHOT
    assert model.configure_optimizers() is None
    assert torch.equal(model.model.deep_prompts[7], source.model.deep_prompts[7])
    optimizer = AnomalyCLIP(**ARGS).configure_optimizers()
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert sum(p.numel() for p in optimizer.param_groups[0]["params"]) == 2 * 12 * 512 + 8 * 4 * 512
