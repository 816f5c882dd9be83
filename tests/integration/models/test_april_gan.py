# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AprilGAN through anomalib's Engine: adapters train, few-shot memory from the datamodule, slim checkpoints; VAND."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib import LearningType
from anomalib.models import get_model
from anomalib.models.components import AnomalibModule

from anomalib_medclip import VAND, AprilGAN

ARGS = {"backbone": "ViT-B-16", "pretrained": None, "image_size": 32, "object_name": "toy"}


def test_few_shot_training_memory_bank_and_slim_checkpoint(
    image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = AprilGAN(**ARGS, k_shot=2, reference_seed=3)
    assert model.learning_type == LearningType.ONE_CLASS
    before = {k: v.clone() for k, v in model.model.named_parameters()}
    datamodule = toy_folder(image_folder)
    first = cpu_engine(tmp_path / "run", max_epochs=1).train(model, datamodule=datamodule)[0]
    moved = {k for k, v in model.model.named_parameters() if not torch.equal(v, before[k])}
    assert moved == {f"fc.{i}.{kind}" for i in range(4) for kind in ("weight", "bias")}

    # the memory bank holds the raw tokens of the seeded draw of normal training images, CLIP-normalised
    samples = datamodule.train_data.samples
    normal = torch.tensor((samples.label_index == 0).to_numpy()).nonzero().flatten()
    chosen = normal[torch.randperm(len(normal), generator=torch.Generator().manual_seed(3))[:2]].sort().values
    images = torch.stack([model.pre_processor.transform(datamodule.train_data[int(i)].image) for i in chosen])
    with torch.no_grad():
        tokens = model.model.backbone.encode_image(images, out_layers=(3, 6, 9, 12)).patch_tokens
    assert torch.allclose(model.model.memory_bank, torch.stack([t.reshape(8, -1) for t in tokens]), atol=1e-6)
    # the score-fusion range is the min and max of the per-image map maxima over the validation split
    with torch.no_grad():
        maxima = torch.cat(
            [
                model.model(model.pre_processor.transform(batch.image)).anomaly_map.amax(dim=(1, 2, 3))
                for batch in datamodule.val_dataloader()
            ]
        )
    assert torch.allclose(model.model.score_range, torch.stack([maxima.min(), maxima.max()]), atol=1e-6)

    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    state = torch.load(ckpt, weights_only=False)
    assert not [key for key in state["state_dict"] if ".clip." in key]
    assert {"model.memory_bank", "model.text_features", "model.score_range", "model.fc.0.weight"} <= set(
        state["state_dict"]
    )
    assert state["object_name"] == "toy"
    fresh = AprilGAN(**{**ARGS, "object_name": "other"}, k_shot=2, reference_seed=3)
    again = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)[0]
    assert again == pytest.approx(first, abs=1e-6)
    assert torch.equal(fresh.model.text_features, model.model.text_features)  # restored, not re-encoded
    assert fresh.model.object_name == "toy"


def test_official_checkpoint_makes_it_zero_or_few_shot(tmp_path: Path) -> None:
    source = AprilGAN(**ARGS, seed=5)
    path = source.model.save_official_checkpoint(tmp_path / "adapters.pth")
    for k_shot, expected in ((0, LearningType.ZERO_SHOT), (4, LearningType.FEW_SHOT)):
        model = AprilGAN(**ARGS, official_checkpoint=str(path), k_shot=k_shot)
        assert model.learning_type == expected
        assert model.configure_optimizers() is None
        assert torch.equal(model.model.fc[2].weight, source.model.fc[2].weight)
    optimizer = AprilGAN(**ARGS).configure_optimizers()
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert sum(p.numel() for p in optimizer.param_groups[0]["params"]) == 4 * (768 * 512 + 512)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        AprilGAN(**ARGS, official_checkpoint=str(tmp_path / "nowhere.pth"))


def test_too_few_normal_training_images_for_k_shot() -> None:
    model = AprilGAN(**ARGS, k_shot=50)
    import pandas as pd

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
    model = get_model("VAND", **ARGS)
    assert isinstance(model, VAND)
    assert isinstance(model, AprilGAN)
    assert model.hparams.object_name == "toy"
