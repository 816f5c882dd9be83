# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""VanillaCLIP through anomalib's Engine: zero-shot and fine-tuning, slim checkpoints that reload identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib import LearningType

from anomalib_medclip import VanillaCLIP


def _checkpoint(root: Path) -> Path:
    (path,) = root.rglob("model.ckpt")
    return path


def test_zero_shot_train_checkpoint_is_slim_and_reloads_identically(
    image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = VanillaCLIP(backbone="ViT-B-16", pretrained=None, image_size=32, object_name="toy image")
    assert model.learning_type == LearningType.ZERO_SHOT
    results = cpu_engine(tmp_path / "run")
    first = results.train(model, datamodule=toy_folder(image_folder))[0]
    assert {"image_AUROC", "pixel_AUROC"} <= first.keys()
    ckpt = _checkpoint(tmp_path / "run")
    assert ckpt.stat().st_size < 5 * 2**20
    state = torch.load(ckpt, weights_only=False)
    assert not [key for key in state["state_dict"] if ".clip." in key]
    assert state["anomalib_medclip_backbones"]["model.backbone"]["name"] == "ViT-B-16"

    fresh = VanillaCLIP(backbone="ViT-B-16", pretrained=None, image_size=32, object_name="toy image")
    again = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)[0]
    assert again == pytest.approx(first, abs=1e-6)

    loaded = VanillaCLIP.load_from_checkpoint(ckpt)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(images).pred_score, model.model(images).pred_score, atol=1e-6)


def test_checkpoint_of_another_backbone_is_refused(image_folder: Path, tmp_path: Path, toy_folder, cpu_engine) -> None:
    cpu_engine(tmp_path / "run").train(
        VanillaCLIP(backbone="ViT-B-16", pretrained=None, image_size=32, object_name="x", seed=1),
        datamodule=toy_folder(image_folder),
    )
    with pytest.raises(ValueError, match="Checkpoint was trained with backbone"):
        VanillaCLIP.load_from_checkpoint(_checkpoint(tmp_path / "run"), seed=2)


def test_finetuning_trains_only_last_blocks_and_checkpoint_holds_only_them(
    image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    torch.manual_seed(0)
    model = VanillaCLIP(
        backbone="ViT-B-16", pretrained=None, image_size=32, object_name="toy", finetune_layers=1, lr=1e-3
    )
    assert model.learning_type == LearningType.ONE_CLASS
    before = {k: v.clone() for k, v in model.model.backbone.clip.state_dict().items()}
    first = cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=toy_folder(image_folder))[0]
    after = model.model.backbone.clip.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed
    assert all(k.startswith("visual.transformer.resblocks.11.") for k in changed)

    ckpt = _checkpoint(tmp_path / "run")
    keys = torch.load(ckpt, weights_only=False)["state_dict"].keys()
    backbone_keys = {k for k in keys if ".clip." in k}
    assert backbone_keys == {
        f"model.backbone.clip.{k}" for k in before if k.startswith("visual.transformer.resblocks.11.")
    }

    fresh = VanillaCLIP(backbone="ViT-B-16", pretrained=None, image_size=32, object_name="toy", finetune_layers=1)
    again = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)[0]
    assert again == pytest.approx(first, abs=1e-6)


def test_object_name_comes_from_datamodule_when_not_given(image_folder: Path) -> None:
    model = VanillaCLIP(backbone="ViT-B-16", pretrained=None, image_size=32)

    class _Trainer:
        datamodule = type("DM", (), {"object_name": "brain MRI scan"})()

    model._trainer = _Trainer()
    assert model.resolve_object_name(None) == "brain MRI scan"
    assert model.resolve_object_name("liver CT scan") == "liver CT scan"
