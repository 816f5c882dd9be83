# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP through anomalib's Engine: only the prompts train; batches without masks train the image term.

What every model does through the Engine (train, then test from the checkpoint) is ``test_engine_conformance.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from anomalib import LearningType
from anomalib.data import Folder


def test_training_moves_only_the_prompts(
    tiny_model, image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = tiny_model("AnomalyCLIP", lr=1e-2)
    assert model.learning_type == LearningType.ONE_CLASS
    before = {k: v.clone() for k, v in model.model.named_parameters()}
    cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))
    moved = {k for k, v in model.model.named_parameters() if not torch.equal(v, before[k])}
    assert moved == {"ctx_pos", "ctx_neg", *(f"deep_prompts.{i}" for i in range(8))}


def test_batches_without_masks_train_the_image_term(
    tiny_model, image_folder: Path, tmp_path: Path, cpu_engine, caplog
) -> None:
    datamodule = Folder(
        name="toy", root=image_folder, normal_dir="good", abnormal_dir="bad", train_batch_size=4, eval_batch_size=4,
        num_workers=0, seed=0,
    )  # fmt: skip
    model = tiny_model("AnomalyCLIP")
    before = model.model.ctx_pos.clone()
    with caplog.at_level(logging.WARNING):
        cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=datamodule)
    assert "only the image loss is trained" in caplog.text
    assert not torch.equal(model.model.ctx_pos, before)
