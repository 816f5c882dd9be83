# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Official prompt files are tied to the CLIP they were trained on: one in ViT-L-14's widths is refused by shape on
BiomedCLIP's towers, naming the tensor and both shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

VIT_L14_TEXT_WIDTH = 768


def test_vit_l14_anomaly_clip_file_is_refused_by_shape(tiny_model, tmp_path: Path) -> None:
    # the original's file format, written through the causal tower, then widened to ViT-L-14's text width
    path = tiny_model("AnomalyCLIP", deep_depth=2).model.save_official_checkpoint(tmp_path / "epoch_15.pth")
    state = torch.load(path, weights_only=True)
    state["prompt_learner"] = {
        key: torch.zeros(*value.shape[:-1], VIT_L14_TEXT_WIDTH) if value.is_floating_point() else value
        for key, value in state["prompt_learner"].items()
    }
    torch.save(state, path)
    model = tiny_model("AnomalyCLIP", biomed=True)
    assert model.model.backbone.text_width != VIT_L14_TEXT_WIDTH
    with pytest.raises(ValueError, match=r"\['ctx_pos'\] has shape \(1, 1, 12, 768\), expected \(1, 1, 12, 64\)"):
        model.model.load_official_checkpoint(path)
