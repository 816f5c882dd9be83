# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Mixed precision: the models run under autocast (bf16 on CPU, fp16 on CUDA) and hand float32 scores and maps on.

Every model of the package on the tiny test backbones of both tower kinds (``tiny_model``, ``biomed=True``: timm ViT +
BERT), with the options that exercise its trainable and test-time parts.
"""

from __future__ import annotations

import pytest
import torch
from anomalib import LearningType
from anomalib.data import ImageBatch

from anomalib_medclip.models import list_models

MODELS = list_models()


def _model(make, name: str, device: str, biomed: bool = False) -> torch.nn.Module:
    model = make(name, biomed=biomed)
    model.setup("fit")  # Lightning's hook: the prompts are set up for the model's object phrase
    return model.to(device)


def _check(model: torch.nn.Module, device: str, dtype: torch.dtype, tolerance: float) -> None:
    images = torch.rand(4, 3, 32, 32, device=device)
    model.eval()
    with torch.no_grad():
        reference = model.model(images)
        with torch.autocast(device, dtype=dtype):
            mixed = model.model(images)
    for field in ("pred_score", "anomaly_map"):
        value, expected = getattr(mixed, field), getattr(reference, field)
        assert value.dtype == torch.float32, field  # PostProcessor, metrics and numpy exports get float32
        assert torch.isfinite(value).all()
        assert torch.allclose(value, expected, atol=tolerance), (field, (value - expected).abs().max())

    if model.learning_type == LearningType.ZERO_SHOT:  # training-free (AnoVL): nothing to train
        return
    model.train()
    gt_mask = torch.zeros(4, 32, 32, dtype=torch.bool, device=device)
    gt_mask[2:, 8:20, 8:20] = True
    batch = ImageBatch(image=images, gt_label=torch.tensor([0, 0, 1, 1], device=device), gt_mask=gt_mask)
    model.training_step(batch).backward()
    reached = {name for name, p in model.named_parameters() if p.grad is not None}  # in float32
    model.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=dtype):
        loss = model.training_step(batch)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert torch.isfinite(loss)
    assert reached
    assert set(grads) == reached  # the same parameters learn under mixed precision
    assert all(torch.isfinite(g).all() for g in grads.values())


BIOMED = [pytest.param(False, id="clip"), pytest.param(True, id="biomedclip")]  # the two tower kinds


@pytest.mark.parametrize("biomed", BIOMED)
@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_on_cpu(name: str, biomed: bool, tiny_model) -> None:
    _check(_model(tiny_model, name, "cpu", biomed), "cpu", torch.bfloat16, tolerance=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("biomed", BIOMED)
@pytest.mark.parametrize("name", MODELS)
def test_fp16_autocast_on_cuda(name: str, biomed: bool, tiny_model) -> None:
    _check(_model(tiny_model, name, "cuda", biomed), "cuda", torch.float16, tolerance=0.02)
