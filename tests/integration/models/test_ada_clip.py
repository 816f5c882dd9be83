# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP through anomalib's Engine: training at batch 4 moves every learnable part the original's forward uses.

What every model does through the Engine (train, then test from the checkpoint) is ``test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib import LearningType


def test_batched_training_moves_the_learnable_parts(
    tiny_model, image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = tiny_model("AdaCLIP")
    assert model.learning_type == LearningType.ONE_CLASS
    before = {k: v.clone() for k, v in model.model.named_parameters() if v.requires_grad}
    first = cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))[0]
    moved = {k for k, v in model.model.named_parameters() if k in before and not torch.equal(v, before[k])}
    assert moved == set(before) - {"text_prompter.static_prompts.0"}  # unused by the original's forward too
    assert {"image_AUROC", "pixel_AUROC"} <= first.keys()
