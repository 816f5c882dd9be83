# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MedCrossModalCLIP through anomalib's Engine: its three blocks and the unfrozen last block train; the checkpoint
holds only that block of CLIP.

What every model does through the Engine (train, then test from the checkpoint) is ``test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib import LearningType


def test_training_moves_the_blocks_and_the_last_clip_block(
    tiny_model, image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = tiny_model("MedCrossModalCLIP", finetune_layers=1)
    assert model.learning_type == LearningType.ONE_CLASS
    last = model.model.backbone.visual_depth - 1
    before = {k: v.clone() for k, v in model.model.named_parameters() if v.requires_grad}
    cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))
    moved = {k for k, v in model.model.named_parameters() if k in before and not torch.equal(v, before[k])}
    assert {
        "b_t.2.weight",
        "b_v.weight",
        "b_vt.0.weight",
        f"backbone.clip.visual.transformer.resblocks.{last}.mlp.c_fc.weight",
    } <= moved

    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    clip_keys = {k for k in torch.load(ckpt, weights_only=False)["state_dict"] if ".clip." in k}
    assert clip_keys
    assert all(f".resblocks.{last}." in k for k in clip_keys)
