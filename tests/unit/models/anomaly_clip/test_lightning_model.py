# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP's Lightning side in process: the original's optimiser; released prompts make it zero-shot.

Its Engine runs are ``tests/integration/models/test_anomaly_clip.py`` and ``test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib import LearningType


def test_optimizer_and_official_checkpoint(tiny_model, tmp_path: Path) -> None:
    source = tiny_model("AnomalyCLIP", seed=3)
    path = source.model.save_official_checkpoint(tmp_path / "epoch_15.pth")
    model = tiny_model("AnomalyCLIP", official_checkpoint=str(path))
    assert model.learning_type == LearningType.ZERO_SHOT
    assert model.configure_optimizers() is None
    assert torch.equal(model.model.deep_prompts[7], source.model.deep_prompts[7])
    optimizer = tiny_model("AnomalyCLIP").configure_optimizers()
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    width = source.model.backbone.text_width  # 2 x 12 context vectors, 8 deep prompts of 4 tokens
    assert sum(p.numel() for p in optimizer.param_groups[0]["params"]) == 2 * 12 * width + 8 * 4 * width
