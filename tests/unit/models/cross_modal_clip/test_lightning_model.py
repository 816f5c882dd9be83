# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MedCrossModalCLIP's Lightning side in process: two learning rates, one for its blocks, one for CLIP's.

Its Engine runs are ``tests/integration/models/test_cross_modal_clip.py`` and ``test_engine_conformance.py``.
"""

from __future__ import annotations


def test_optimizer_has_two_learning_rates(tiny_model) -> None:
    model = tiny_model("MedCrossModalCLIP", finetune_layers=2, lr=1e-3, clip_lr=1e-5)
    groups = model.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-5]
    assert sum(p.numel() for p in groups[1]["params"]) == sum(
        p.numel() for b in model.model.backbone.clip.visual.transformer.resblocks[-2:] for p in b.parameters()
    )
