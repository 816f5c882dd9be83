# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP's Lightning side in process: the original's optimiser; released weights make it zero-shot.

Its Engine runs are ``tests/integration/models/test_ada_clip.py`` and ``test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib import LearningType


def test_optimizer_and_official_checkpoint(tiny_model, tmp_path: Path) -> None:
    path = tiny_model("AdaCLIP", seed=3).model.save_official_checkpoint(tmp_path / "pretrained_all.pth")
    model = tiny_model("AdaCLIP", official_checkpoint=str(path))
    assert model.learning_type == LearningType.ZERO_SHOT
    assert model.configure_optimizers() is None
    optimizer = tiny_model("AdaCLIP").configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-2, (0.5, 0.999), 0.01)
    learnable = sum(p.numel() for name, p in model.model.named_parameters() if not name.startswith("backbone."))
    assert sum(p.numel() for p in group["params"]) == learnable
    assert model.model.backbone.info.quick_gelu is False  # the original builds CLIP(**config): nn.GELU
