# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AACLIP (Lightning side): official files, plain-CLIP text, the two optimisers and their stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from anomalib import LearningType

from anomalib_medclip.prompts import aa_clip_sentences


def test_official_files_make_it_zero_shot(tiny_model, tmp_path: Path) -> None:
    trained = tiny_model("AACLIP", seed=3)
    text_path, image_path = trained.model.save_official_checkpoint(tmp_path)
    model = tiny_model("AACLIP", official_checkpoint=str(image_path))  # text_adapter.pth found beside it
    assert model.learning_type == LearningType.ZERO_SHOT
    assert model.configure_optimizers() is None
    assert all(torch.equal(a, b) for a, b in zip(model.model.text_adapter.parameters(),
                                                 trained.model.text_adapter.parameters(), strict=True))  # fmt: skip
    text_path.unlink()
    with pytest.raises(
        FileNotFoundError, match=r"No 'text_adapter\.pth' beside .*official_text_checkpoint=.*text_epochs"
    ):
        tiny_model("AACLIP", official_checkpoint=str(image_path))
    plain = tiny_model("AACLIP", official_checkpoint=str(image_path), text_epochs=0)
    assert not plain.model.adapt_text


def test_without_text_stage_the_anchors_are_plain_clip_text(tiny_model) -> None:
    """The original uses CLIP's own text features (with its projection) when no text adapter was trained."""
    model = tiny_model("AACLIP", text_epochs=0)
    model.model.setup_text("toy")
    backbone = model.model.backbone
    normal, abnormal = aa_clip_sentences("toy")
    with torch.no_grad():
        features = F.normalize(backbone.clip.encode_text(backbone.tokenize([*normal, *abnormal])), dim=-1)
    expected = torch.stack([F.normalize(features[:6].mean(0), dim=-1), F.normalize(features[6:].mean(0), dim=-1)])
    assert (model.model.eval().text_features() - expected).abs().max() < 1e-5


def test_two_optimisers_with_the_originals_settings(tiny_model) -> None:
    model = tiny_model("AACLIP")
    assert model.learning_type == LearningType.ONE_CLASS
    assert not model.automatic_optimization
    assert model.model.backbone.info.quick_gelu is False  # "original": the config's GELU, as CLIP(**config)
    assert model.map_loss.focal_smooth == 1e-5  # the original's focal label smoothing (saturated 100 * cos maps)
    (text, image), (scheduler,) = model.configure_optimizers()
    assert text.param_groups[0]["lr"] == 1e-5
    assert image.param_groups[0]["lr"] == 5e-4
    assert text.param_groups[0]["betas"] == (0.5, 0.999) == image.param_groups[0]["betas"]
    assert {id(p) for p in text.param_groups[0]["params"]} == {id(p) for p in model.model.text_adapter.parameters()}
    assert {id(p) for p in image.param_groups[0]["params"]} == {id(p) for p in model.model.image_adapter.parameters()}
    assert dict(scheduler.milestones) == {16000: 1, 32000: 1}
    assert scheduler.gamma == 0.5
    with pytest.raises(ValueError, match="text_epochs and image_epochs must be >= 0"):
        tiny_model("AACLIP", text_epochs=-1)
    assert not tiny_model("AACLIP", text_epochs=0, image_epochs=0).is_trainable
