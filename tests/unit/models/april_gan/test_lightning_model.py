# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AprilGAN's Lightning side in process: released adapters (zero- or few-shot), optimiser, k_shot checks, VAND.

Its Engine runs are ``tests/integration/models/test_april_gan.py`` and ``test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from anomalib import LearningType
from anomalib.models import get_model
from anomalib.models.components import AnomalibModule

from anomalib_medclip import VAND, AprilGAN


def test_official_checkpoint_makes_it_zero_or_few_shot(tiny_model, tmp_path: Path) -> None:
    source = tiny_model("AprilGAN", seed=5)
    path = source.model.save_official_checkpoint(tmp_path / "adapters.pth")
    for k_shot, expected in ((0, LearningType.ZERO_SHOT), (4, LearningType.FEW_SHOT)):
        model = tiny_model("AprilGAN", official_checkpoint=str(path), k_shot=k_shot)
        assert model.learning_type == expected
        assert model.configure_optimizers() is None
        assert torch.equal(model.model.fc[2].weight, source.model.fc[2].weight)
    optimizer = source.configure_optimizers()
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    backbone = source.model.backbone
    expected_count = 4 * (backbone.visual_width * backbone.embed_dim + backbone.embed_dim)
    assert sum(p.numel() for p in optimizer.param_groups[0]["params"]) == expected_count
    with pytest.raises(FileNotFoundError, match="nowhere"):
        tiny_model("AprilGAN", official_checkpoint=str(tmp_path / "nowhere.pth"))


def test_too_few_normal_training_images_for_k_shot(tiny_model) -> None:
    model = tiny_model("AprilGAN", k_shot=50)
    dataset = type("DS", (), {"samples": pd.DataFrame({"label_index": [0, 1, 0]})})()
    model._trainer = type("T", (), {"datamodule": type("DM", (), {"train_data": dataset})()})()
    with pytest.raises(ValueError, match="k_shot=50, but the training split has only 2 normal images"):
        model.reference_images()


def test_vand_is_the_same_model_under_the_study_name() -> None:
    from jsonargparse._typehints import resolve_class_path_by_name

    assert VAND in AnomalibModule.__subclasses__()
    assert AprilGAN in AnomalibModule.__subclasses__()
    assert VAND.__mro__[1] is AprilGAN
    assert resolve_class_path_by_name(AnomalibModule, "VAND") == "anomalib_medclip.VAND"
    assert resolve_class_path_by_name(AnomalibModule, "AprilGAN") == "anomalib_medclip.AprilGAN"
    model = get_model("VAND", backbone="ViT-tiny-test", pretrained=None, image_size=32, object_name="toy")
    assert isinstance(model, VAND)
    assert isinstance(model, AprilGAN)
    assert model.hparams.object_name == "toy"


def test_batches_without_masks_are_skipped_and_an_epoch_without_any_is_refused(tiny_model) -> None:
    """MVFA's zero-shot split mixes classification categories in: their batches train nothing, masked ones train."""
    from anomalib.data import ImageBatch

    model = tiny_model("AprilGAN")
    model.model.setup_text("toy")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:16, 8:16] = True
    labels = torch.tensor([1, 1])
    model.on_train_epoch_start()
    assert model.training_step(ImageBatch(image=images, gt_label=labels)) is None
    with pytest.raises(ValueError, match="no training batch of this epoch had any"):
        model.on_train_epoch_end()
    loss = model.training_step(ImageBatch(image=images, gt_label=labels, gt_mask=masks))
    assert loss is not None
    assert loss.requires_grad
    model.on_train_epoch_end()  # one batch with masks: the epoch trained
