# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""VanillaCLIP's Lightning side in process: the object phrase's sources, a checkpoint of another backbone refused.

Its Engine runs are ``tests/integration/models/test_vanilla_clip.py`` and ``test_engine_conformance.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning
import pytest


def _trainer_with(object_name: str | None) -> object:
    return type("T", (), {"datamodule": type("DM", (), {"object_name": object_name})()})()


def test_object_name_comes_from_the_model_then_the_datamodule_then_a_default(tiny_model, caplog) -> None:
    model = tiny_model("VanillaCLIP", object_name=None)
    model._trainer = _trainer_with("brain MRI scan")
    assert model.resolve_object_name() == "brain MRI scan"
    model.setup("test")
    assert model.model.object_name == "brain MRI scan"
    given = tiny_model("VanillaCLIP", object_name="liver CT scan")
    given._trainer = _trainer_with("brain MRI scan")
    assert given.resolve_object_name() == "liver CT scan"  # the user's phrase wins
    neither = tiny_model("VanillaCLIP", object_name=None)
    neither._trainer = _trainer_with(None)
    with caplog.at_level(logging.WARNING):
        assert neither.resolve_object_name() == "object"
    assert "No object_name given" in caplog.text


def test_checkpoint_of_another_backbone_is_refused(tiny_model, tmp_path: Path) -> None:
    model = tiny_model("VanillaCLIP", seed=1)
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    with pytest.raises(ValueError, match="Checkpoint was trained with backbone"):
        type(model).load_from_checkpoint(tmp_path / "model.ckpt", seed=2)
