# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AprilGAN through anomalib's Engine: adapters train; the few-shot memory bank comes from the datamodule's normal
training images and the score-fusion range from the validation split; both travel in the checkpoint.

What every model does through the Engine (train, then test from the checkpoint) is ``test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib import LearningType


def test_few_shot_training_memory_bank_and_score_range(
    tiny_model, image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    model = tiny_model("AprilGAN", k_shot=2, reference_seed=3)
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
    expected = torch.stack([t.reshape(-1, t.shape[-1]) for t in tokens])  # (layers, k_shot x patches, width)
    assert torch.allclose(model.model.memory_bank, expected, atol=1e-6)
    # the score-fusion range is the min and max of the per-image map maxima over the validation split
    with torch.no_grad():
        maxima = torch.cat(
            [
                model.model(model.pre_processor.transform(batch.image)).anomaly_map.amax(dim=(1, 2, 3))
                for batch in datamodule.val_dataloader()
            ]
        )
    assert torch.allclose(model.model.score_range, torch.stack([maxima.min(), maxima.max()]), atol=1e-6)

    # the checkpoint holds the adapters, the memory bank and the range (not the text: it derives from the phrase)
    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    state = torch.load(ckpt, weights_only=False)
    assert {"model.memory_bank", "model.score_range", "model.fc.0.weight"} <= set(state["state_dict"])
    assert not [key for key in state["state_dict"] if "text" in key]
    fresh = tiny_model("AprilGAN", k_shot=2, reference_seed=4, object_name="other")  # another draw, restored
    again = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)[0]
    assert again == pytest.approx(first, abs=1e-6)
    assert torch.equal(fresh.model.memory_bank, model.model.memory_bank)
    assert torch.equal(fresh.model.score_range, model.model.score_range)
    assert fresh.model.object_name == "toy"
