# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints, weights files and runs that cannot work fail with a message naming the file or setting (issue: bad
input #14, #15, #17, #18, #19; #9 is in ``tests/unit/backbones/test_openai_files.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest
import torch

from anomalib_medclip.data import NiftiScans
from anomalib_medclip.models import MedCrossModalCLIP, VanillaCLIP
from anomalib_medclip.models.components.checkpoint import check_checkpoint_file


def _save(model: torch.nn.Module, path: Path) -> Path:
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def test_truncated_checkpoint_is_named(tiny_model, tmp_path: Path) -> None:
    """#15: today fsspec's ``OSError: [Errno 22] Invalid argument``."""
    whole = _save(tiny_model("VanillaCLIP"), tmp_path / "model.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"Checkpoint {truncated} \(\d+ bytes\) is truncated or not a checkpoint"):
        VanillaCLIP.load_from_checkpoint(truncated)
    model = tiny_model("VanillaCLIP")
    model._trainer = SimpleNamespace(ckpt_path=str(truncated), datamodule=None)  # as `anomalib test --ckpt_path`
    with pytest.raises(ValueError, match="is truncated or not a checkpoint"):
        model.setup("test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VanillaCLIP.load_from_checkpoint(tmp_path / "missing.ckpt")
    assert isinstance(VanillaCLIP.load_from_checkpoint(whole), VanillaCLIP)  # a whole one loads
    assert check_checkpoint_file("s3://bucket/model.ckpt") is None  # remote: left to Lightning's fsspec reader


def test_garbage_weights_file_is_named(tmp_path: Path) -> None:
    """#17: ``--model.pretrained <garbage>`` crashed inside jsonargparse."""
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(ValueError, match=rf"Weights file {garbage} could not be read as CLIP weights"):
        VanillaCLIP(backbone="ViT-tiny-test", pretrained=str(garbage), image_size=32)


def test_checkpoint_of_other_settings_names_them(tiny_model, tmp_path: Path) -> None:
    """#17: a MedCrossModalCLIP checkpoint with n_ctx 2 into a model built with n_ctx 4 crashed in load_state_dict."""
    ckpt = torch.load(_save(tiny_model("MedCrossModalCLIP", n_ctx=2), tmp_path / "m.ckpt"), weights_only=False)
    model = tiny_model("MedCrossModalCLIP", n_ctx=4)
    model.on_load_checkpoint(ckpt)
    with pytest.raises(ValueError, match=r"trained with n_ctx=2, this MedCrossModalCLIP was built with n_ctx=4"):
        model.load_state_dict(ckpt["state_dict"])
    assert MedCrossModalCLIP.load_from_checkpoint(tmp_path / "m.ckpt").hparams.n_ctx == 2  # the class's loader fits


def test_predict_without_checkpoint_says_why(tmp_path: Path) -> None:
    """#18: ``anomalib predict`` of a zero-shot model without --ckpt_path raised AttributeError in volume_slices.py."""
    with pytest.raises(ValueError, match=r"holds unlabelled scans.*Pass --ckpt_path"):
        NiftiScans(path=tmp_path).val_dataloader()


def test_trainable_model_on_an_empty_training_split_is_refused(tiny_model) -> None:
    """#19: the MVFA release has no train/; a model that trains must not silently skip training."""
    datamodule = SimpleNamespace(train_data=[], root="/data/BMAD", describe=lambda: {"category": "Brain"})
    trainable, zero_shot = tiny_model("MedCrossModalCLIP"), tiny_model("VanillaCLIP", finetune_layers=0)
    for model in (trainable, zero_shot):
        model._trainer = SimpleNamespace(datamodule=datamodule)
    with pytest.raises(ValueError, match=r"MedCrossModalCLIP trains .* the training split of .* is empty"):
        trainable.on_fit_start()
    zero_shot.on_fit_start()  # does not train: fine
