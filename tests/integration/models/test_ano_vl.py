# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnoVL through anomalib's Engine: zero-shot with test-time adaptation inside the test loop, slim checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib import LearningType

from anomalib_medclip import AnoVL

ARGS = {"backbone": "ViT-B-16", "pretrained": None, "image_size": 32, "object_name": "toy", "domains": ["photo"]}


def test_zero_shot_run_with_adaptation_and_checkpoint_reload(
    image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = AnoVL(**ARGS, tta_steps=2, augmented_score=False)
    assert model.learning_type == LearningType.ZERO_SHOT
    assert model.configure_optimizers() is None
    first = cpu_engine(tmp_path / "run").train(model, datamodule=toy_folder(image_folder))[0]
    assert {"image_AUROC", "pixel_AUROC"} <= first.keys()

    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    state = torch.load(ckpt, weights_only=False)
    assert {"model.text_features", "model.sentence_features"} <= set(state["state_dict"])
    assert not [key for key in state["state_dict"] if ".clip." in key]
    assert state["object_name"] == "toy"
    fresh = AnoVL(**{**ARGS, "object_name": "other"}, tta_steps=2, augmented_score=False)
    again = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)[0]
    assert again == pytest.approx(first, abs=1e-6)
    assert torch.equal(fresh.model.text_features, model.model.text_features)  # restored, not re-encoded
    assert fresh.model.object_name == "toy"
