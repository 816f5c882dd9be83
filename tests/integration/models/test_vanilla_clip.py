# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""VanillaCLIP through anomalib's Engine: fine-tuning moves only the last blocks, which are all its checkpoint holds.

What every model does through the Engine (train, then test from the checkpoint) is ``test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib import LearningType


def test_finetuning_trains_only_last_blocks_and_checkpoint_holds_only_them(
    tiny_model, image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = tiny_model("VanillaCLIP", finetune_layers=1, lr=1e-3)
    assert model.learning_type == LearningType.ONE_CLASS
    last = f"visual.transformer.resblocks.{model.model.backbone.visual_depth - 1}."
    before = {k: v.clone() for k, v in model.model.backbone.clip.state_dict().items()}
    cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))
    after = model.model.backbone.clip.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed
    assert all(k.startswith(last) for k in changed)

    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    keys = torch.load(ckpt, weights_only=False)["state_dict"].keys()
    assert {k for k in keys if ".clip." in k} == {f"model.backbone.clip.{k}" for k in before if k.startswith(last)}
