# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The model contract through anomalib's ``Engine``, the same way for every model (``models.list_models()``).

``engine.train`` then ``engine.test(ckpt_path=<the checkpoint train wrote>)`` on the same model object gives the
train run's test metrics again; a fresh model built with another phrase tests the same from that checkpoint, with the
checkpoint's phrase restored and the same outputs. The checkpoint is slim (no frozen CLIP weights), records the
backbone, the model class and the object phrase, and holds no text features. The ports run the same way from the
original's weights file (``official_checkpoint``: zero-shot), AnoVL is zero-shot anyway. Every model also runs the
contract on ``BiomedCLIP-tiny-test`` (a timm ViT and a Hugging Face BERT, BiomedCLIP's tower kinds). The in-process
part of the contract is ``tests/unit/models/test_conformance.py``; what is specific to one model is in
``test_<model>.py`` here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib import LearningType

from anomalib_medclip.models import list_models

IMAGES = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
OFFICIAL = {
    "AnomalyCLIP": "epoch_15.pth",
    "AdaCLIP": "pretrained_all.pth",
    "AprilGAN": "adapters.pth",
    "AACLIP": "image_adapter_20.pth",  # text_adapter.pth is written and found beside it
}
CASES = [(name, False, False) for name in list_models()] + [(name, True, False) for name in OFFICIAL]
CASES += [(name, False, True) for name in list_models()]  # on BiomedCLIP's tower kinds (timm ViT + BERT)


def _outputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        out = model.model(IMAGES)
    return out.pred_score, out.anomaly_map


@pytest.mark.parametrize(
    ("name", "official", "biomed"), CASES,
    ids=[f"{n}-official" if o else f"{n}-biomedclip" if b else n for n, o, b in CASES],
)  # fmt: skip
def test_train_then_test_from_its_checkpoint(
    name: str, official: bool, biomed: bool, tiny_model, image_folder: Path, tmp_path: Path, toy_folder, cpu_engine
) -> None:
    options: dict[str, object] = {"biomed": biomed}
    if official:  # the original's weights file, written from another seed's tiny model
        path = tiny_model(name, seed=3).model.save_official_checkpoint(tmp_path / OFFICIAL[name])
        options["official_checkpoint"] = str(path)
    model = tiny_model(name, **options)
    assert (model.learning_type == LearningType.ZERO_SHOT) == (official or not model.is_trainable)
    datamodule = toy_folder(image_folder)
    engine = cpu_engine(tmp_path / "run", max_epochs=1)

    first = engine.train(model, datamodule=datamodule)[0]
    assert {"image_AUROC", "pixel_AUROC"} <= first.keys()
    (ckpt,) = (tmp_path / "run").rglob("model.ckpt")
    again = engine.test(model, datamodule=datamodule, ckpt_path=ckpt)[0]  # the same object, from its checkpoint
    assert again == pytest.approx(first, abs=1e-6)

    phrase = model.model.object_name
    state = torch.load(ckpt, weights_only=False)
    assert state["object_name"] == phrase
    assert state["anomalib_medclip_model"] == {"class": name, "torch_model": type(model.model).__name__}
    backbone = "BiomedCLIP-tiny-test" if biomed else "ViT-tiny-test"
    assert state["anomalib_medclip_backbones"]["model.backbone"]["name"] == backbone
    unfrozen = {f"model.{n}" for n, p in model.model.named_parameters() if p.requires_grad and ".clip." in f".{n}"}
    assert {key for key in state["state_dict"] if ".clip." in key} == unfrozen  # no frozen CLIP weights
    assert not [key for key in state["state_dict"] if "text_features" in key or "sentence_features" in key]

    other = {} if model.model.object_agnostic else {"object_name": "other"}
    fresh = tiny_model(name, **options, **other)
    fresh_results = cpu_engine(tmp_path / "again").test(fresh, datamodule=toy_folder(image_folder), ckpt_path=ckpt)
    assert fresh_results[0] == pytest.approx(first, abs=1e-6)
    assert fresh.model.object_name == phrase  # restored from the checkpoint
    for value, expected in zip(_outputs(fresh), _outputs(model), strict=True):
        assert torch.allclose(value, expected, atol=1e-6)  # the same text features and learnt parts
