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
    image_path = trained.model.save_official_checkpoint(tmp_path / "image_adapter_1.pth")
    text_path = tmp_path / "text_adapter.pth"
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


def test_one_adam_with_the_originals_two_settings(tiny_model) -> None:
    model = tiny_model("AACLIP", lr_milestones=(2, 4))
    assert model.learning_type == LearningType.ONE_CLASS
    assert model.model.backbone.info.quick_gelu is False  # "original": the config's GELU, as CLIP(**config)
    assert model.map_loss.focal_smoothing == 1e-5  # the original's focal label smoothing (saturated 100 * cos maps)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    text, image = optimizer.param_groups
    assert (text["lr"], image["lr"], text["betas"], image["betas"]) == (1e-5, 5e-4, (0.5, 0.999), (0.5, 0.999))
    assert {id(p) for p in text["params"]} == {id(p) for p in model.model.text_adapter.parameters()}
    assert {id(p) for p in image["params"]} == {id(p) for p in model.model.image_adapter.parameters()}
    lrs = []
    for image_steps in range(6):  # the image rate halves after the 2nd and the 4th stage-2 step, the text rate never
        model.image_steps = image_steps
        scheduler.step()
        lrs.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
    assert lrs == [(1e-5, 5e-4)] * 2 + [(1e-5, 2.5e-4)] * 2 + [(1e-5, 1.25e-4)] * 2
    with pytest.raises(ValueError, match="text_epochs and image_epochs must be >= 0"):
        tiny_model("AACLIP", text_epochs=-1)
    assert not tiny_model("AACLIP", text_epochs=0, image_epochs=0).is_trainable


def test_one_adam_equals_two_adams_over_the_stages(tiny_model) -> None:
    """Adam state is per parameter and frozen adapters get no gradient: the original's two optimisers, step by step."""
    from anomalib.data import ImageBatch

    model = tiny_model("AACLIP", text_lr=1e-2, image_lr=1e-2)
    model.model.setup_text("toy")
    reference = {k: v.clone() for k, v in model.model.state_dict().items() if "adapter" in k}
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 32, 32)
    mask[1, 8:20, 8:20] = 1
    batch = ImageBatch(image=images, gt_label=torch.tensor([0, 1]), gt_mask=mask.bool())
    optimizer = model.configure_optimizers()["optimizer"]
    text_adam = torch.optim.Adam(model.model.text_adapter.parameters(), lr=1e-2, betas=(0.5, 0.999))
    image_adam = torch.optim.Adam(model.model.image_adapter.parameters(), lr=1e-2, betas=(0.5, 0.999))
    ours, theirs = [], []
    for optimizers, results in (([optimizer], ours), ([text_adam, image_adam], theirs)):
        model.model.load_state_dict(reference, strict=False)
        for stage in (1, 1, 2, 2):
            model.model.train()
            model.model.set_stage(stage)
            loss = model.text_stage_loss(batch) if stage == 1 else model.image_stage_loss(batch)
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            (optimizers[0] if len(optimizers) == 1 else optimizers[stage - 1]).step()
        results.append({k: v.clone() for k, v in model.model.state_dict().items() if "adapter" in k})
    assert all(torch.allclose(ours[0][k], theirs[0][k], atol=1e-7) for k in reference)
    assert all(not torch.equal(ours[0][k], reference[k]) for k in reference)
