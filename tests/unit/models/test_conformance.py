# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The model contract, checked the same way for every model of the package (``models.list_models()``).

Build on the tiny backbone, text lifecycle, batch = singles, slim checkpoint round trip (class and object phrase
stored; ``load_from_checkpoint`` then a plain call outside any Lightning stage), torch export through anomalib's
``TorchInferencer``, the 3D evaluation as a constructor component. The Engine runs of the same contract are in
``tests/integration/models/test_engine_conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

import lightning
import pytest
import torch
from anomalib import LearningType
from anomalib.deploy import TorchInferencer

from anomalib_medclip.models import list_models
from anomalib_medclip.prompts import AGNOSTIC_OBJECT
from anomalib_medclip.volumes import VolumeEvaluator

MODELS = list_models()
IMAGES = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _save(model: torch.nn.Module, path: Path) -> Path:
    """Write a Lightning checkpoint of ``model`` as ``Engine``/``Trainer`` would, without running a stage."""
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def _outputs(model: torch.nn.Module, images: torch.Tensor = IMAGES) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        out = model.model(images)
    return out.pred_score, out.anomaly_map


def test_every_model_is_listed() -> None:
    assert MODELS == [
        "AACLIP",
        "AdaCLIP",
        "AnoVL",
        "AnomalyCLIP",
        "AprilGAN",
        "MVFA",
        "MedCrossModalCLIP",
        "VAND",
        "VanillaCLIP",
    ]


@pytest.mark.parametrize("name", MODELS)
def test_text_lifecycle(name: str, tiny_model) -> None:
    model = tiny_model(name)
    torch_model = model.model
    if torch_model.object_agnostic:  # fixed phrase, ready from construction; another phrase is refused
        assert torch_model.text_ready
        assert torch_model.object_name == AGNOSTIC_OBJECT
        with pytest.raises(ValueError, match="object-agnostic"):
            torch_model.setup_text("brain MRI scan")
        assert not hasattr(model, "object_name") or model.object_name is None
        return
    assert not torch_model.text_ready
    assert torch_model.object_name is None
    with pytest.raises(RuntimeError, match=r"setup_text\(object_name\)"):
        torch_model(IMAGES)
    with pytest.raises(ValueError, match="non-empty phrase"):
        torch_model.setup_text("  ")
    model.setup("fit")  # Lightning's hook: the model's object_name (the datamodule's when it has none)
    assert torch_model.text_ready
    assert torch_model.object_name == "toy"
    first = _outputs(model)
    torch_model.setup_text("brain MRI scan")
    assert torch_model.object_name == "brain MRI scan"
    assert not torch.equal(_outputs(model)[0], first[0])  # the phrase reaches the prompts


BIOMED = [pytest.param(False, id="clip"), pytest.param(True, id="biomedclip")]  # the two tower kinds


@pytest.mark.parametrize("biomed", BIOMED)
@pytest.mark.parametrize("name", MODELS)
def test_batch_equals_single_images(name: str, biomed: bool, tiny_model) -> None:
    model = tiny_model(name, biomed=biomed)
    model.setup("test")
    scores, maps = _outputs(model)
    assert scores.shape == (3,)
    assert maps.shape == (3, 1, 32, 32)
    assert scores.dtype == maps.dtype == torch.float32
    for index in range(3):
        score, anomaly_map = _outputs(model, IMAGES[index : index + 1])
        assert torch.allclose(score, scores[index : index + 1], atol=1e-5)
        assert torch.allclose(anomaly_map, maps[index : index + 1], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_learning_type_matches_what_fit_trains(name: str, tiny_model) -> None:
    model = tiny_model(name)
    assert model.is_trainable == (model.configure_optimizers() is not None)
    assert (model.learning_type == LearningType.ONE_CLASS) == model.is_trainable
    trainable = [p for p in model.model.parameters() if p.requires_grad]
    assert bool(trainable) == model.is_trainable or name == "AnoVL"  # AnoVL: adapters live only inside the test step
    described = model.describe()
    assert described["learning_type"] == model.learning_type
    assert described["backbone"]["name"] == "ViT-tiny-test"
    assert described["settings"]["seed"] == 0
    assert not {"pre_processor", "post_processor", "evaluator", "visualizer"} & described["settings"].keys()


@pytest.mark.parametrize("biomed", BIOMED)
@pytest.mark.parametrize("name", MODELS)
def test_slim_checkpoint_round_trip(name: str, biomed: bool, tiny_model, tmp_path: Path) -> None:
    model = tiny_model(name, biomed=biomed)
    model.setup("fit")
    model.model.setup_text(model.model.object_name)  # as after a stage: the phrase in use
    expected = _outputs(model)
    ckpt = _save(model, tmp_path / "model.ckpt")
    state = torch.load(ckpt, weights_only=False)
    assert state["object_name"] == model.model.object_name
    assert state["anomalib_medclip_model"] == {"class": name, "torch_model": type(model.model).__name__}
    frozen = {k for k in state["state_dict"] if ".clip." in k}
    trained = {f"model.{n}" for n, p in model.model.named_parameters() if p.requires_grad and ".clip." in f".{n}"}
    assert frozen == trained  # frozen CLIP weights are never written, unfrozen blocks are

    loaded = type(model).load_from_checkpoint(ckpt)  # outside any Lightning stage
    assert loaded.model.text_ready
    assert loaded.model.object_name == model.model.object_name
    for value, reference in zip(_outputs(loaded), expected, strict=True):
        assert torch.equal(value, reference)
    with torch.no_grad():
        assert loaded(IMAGES).pred_score.shape == (3,)  # pre-processing, model and post-processing


def test_another_models_checkpoint_is_refused_by_name(tiny_model, tmp_path: Path) -> None:
    ckpt = _save(tiny_model("VanillaCLIP"), tmp_path / "vanilla.ckpt")
    with pytest.raises(ValueError, match="is a VanillaCLIP checkpoint, not an AnomalyCLIP one"):
        tiny_model("AnomalyCLIP").on_load_checkpoint(torch.load(ckpt, weights_only=False))
    model = tiny_model("VAND")  # the same model under the study's name takes AprilGAN checkpoints
    model.on_load_checkpoint(torch.load(_save(tiny_model("AprilGAN"), tmp_path / "april.ckpt"), weights_only=False))


@pytest.mark.parametrize("biomed", BIOMED)
@pytest.mark.parametrize("name", MODELS)
def test_torch_export_predicts_like_the_model(name: str, biomed: bool, tiny_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # anomalib unpickles exported models only when told: ours, fresh
    model = tiny_model(name, biomed=biomed)
    model.setup("test")
    model.eval()
    path = model.to_torch(tmp_path)
    prediction = TorchInferencer(path, device="cpu").predict(IMAGES[0])  # anomalib calls it with autograd on
    with torch.inference_mode():  # as the Engine's test and predict loops
        expected = model(IMAGES[:1])
    assert torch.equal(prediction.pred_score, expected.pred_score)
    assert torch.equal(prediction.anomaly_map.as_subclass(torch.Tensor), expected.anomaly_map.squeeze(1))


@pytest.mark.parametrize("name", MODELS)
def test_volume_evaluator_is_a_constructor_component(name: str, tiny_model, tmp_path: Path) -> None:
    default = tiny_model(name)
    assert isinstance(default.configure_callbacks()[-1], VolumeEvaluator)
    switched_off = tiny_model(name, volume_evaluator=False).configure_callbacks()
    assert not any(isinstance(c, VolumeEvaluator) for c in switched_off)

    model = tiny_model(name, volume_evaluator=VolumeEvaluator(threshold_policy="oracle", hd95=True))
    assert model.hparams.volume_evaluator == model.volume_evaluator.settings
    assert model.volume_evaluator in model.configure_callbacks()
    ckpt = _save(model, tmp_path / "model.ckpt")
    loaded = type(model).load_from_checkpoint(ckpt)  # the user's choice travels with the checkpoint
    assert loaded.volume_evaluator.settings == model.volume_evaluator.settings
    assert type(model).load_from_checkpoint(ckpt, volume_evaluator=False).volume_evaluator is None  # overridden
    restored = tiny_model(name)  # built with the default, then restored (as `anomalib test --ckpt_path`)
    restored.on_load_checkpoint(torch.load(ckpt, weights_only=False))
    assert restored.volume_evaluator.settings["threshold_policy"] == "oracle"
    explicit = tiny_model(name, volume_evaluator=VolumeEvaluator(hd95=False))  # a choice given now wins
    explicit.on_load_checkpoint(torch.load(ckpt, weights_only=False))
    assert explicit.volume_evaluator.settings["threshold_policy"] == "adaptive"
