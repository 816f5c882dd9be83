# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MedCrossModalCLIPModel: shapes, gradients, plain-CLIP start, batch parity, block switches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components.losses import MapLoss
from anomalib_medclip.models.cross_modal_clip import MedCrossModalCLIPModel
from anomalib_medclip.models.cross_modal_clip.torch_model import text_layer_for
from anomalib_medclip.prompts import cross_modal_sentences
from anomalib_medclip.prompts.cross_modal import TEMPLATE


def _model(backbone: CLIPBackbone, **kwargs: object) -> MedCrossModalCLIPModel:
    torch.manual_seed(0)
    model = MedCrossModalCLIPModel(backbone, map_layers=(3, 12), smoothing_sigma=0, **kwargs)
    model.setup_text("brain MRI scan")
    return model


def test_shapes(small_backbone: CLIPBackbone) -> None:
    out = _model(small_backbone)(torch.randn(2, 3, 32, 32))
    assert out.pred_score.shape == (2,)
    assert out.anomaly_map.shape == (2, 1, 32, 32)
    assert ((out.anomaly_map >= 0) & (out.anomaly_map <= 1)).all()


def test_gradients_reach_every_block_and_nothing_frozen(small_backbone: CLIPBackbone) -> None:
    model = _model(small_backbone)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images, labels, masks = torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), torch.rand(2, 32, 32) > 0.7
    for _ in range(2):  # B_t's first layer only gets gradients once its zero-initialised last layer moved
        optimizer.zero_grad()
        logits, maps = model.forward_train(images)
        (F.cross_entropy(logits, labels) + MapLoss()(maps, masks)).backward()
        optimizer.step()
    for name, param in model.named_parameters():
        if name.startswith("backbone."):
            assert not param.requires_grad, name
            assert param.grad is None, name
        else:
            assert param.grad is not None, name
            assert param.grad.abs().sum() > 0, name


def test_zero_residual_text_features_equal_plain_clip(small_backbone: CLIPBackbone) -> None:
    model = _model(small_backbone, use_bv=False, use_bvt=False)
    images = torch.randn(2, 3, 32, 32)
    sentences = [TEMPLATE.format(state=s, obj="brain MRI scan") for s in ("normal", "anomalous")]
    assert list(cross_modal_sentences("brain MRI scan")) == sentences
    with torch.no_grad():
        text, _ = model.encode_text(images)
        plain = F.normalize(small_backbone.clip.encode_text(small_backbone.tokenize(sentences)), dim=-1)
        image = F.normalize(small_backbone.clip.encode_image(images), dim=-1)
        expected = (small_backbone.logit_scale * image @ plain.T).softmax(-1)[:, 1]
        score = model(images).pred_score
    assert torch.allclose(text, plain.expand(2, -1, -1), atol=1e-5)
    assert torch.allclose(score, expected, atol=1e-5)  # no visual prompts: the whole model is plain CLIP


def test_trained_residual_makes_text_image_dependent(small_backbone: CLIPBackbone) -> None:
    model = _model(small_backbone)
    torch.nn.init.normal_(model.b_t[-1].weight, std=0.05)
    with torch.no_grad():
        text, _ = model.encode_text(torch.randn(2, 3, 32, 32))
    assert (text[0] - text[1]).abs().max() > 1e-4


def test_batch_equals_single_images(small_backbone: CLIPBackbone) -> None:
    model = _model(small_backbone)
    torch.nn.init.normal_(model.b_t[-1].weight, std=0.05)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        batch = model(images)
        singles = [model(image[None]) for image in images]
    assert torch.allclose(batch.pred_score, torch.cat([s.pred_score for s in singles]), atol=1e-5)
    assert torch.allclose(batch.anomaly_map, torch.cat([s.anomaly_map for s in singles]), atol=1e-5)


def test_block_switches_change_parameter_count(small_backbone: CLIPBackbone) -> None:
    d_t, d_v, m, depth = small_backbone.text_width, small_backbone.visual_width, 4, small_backbone.visual_depth

    def count(**kwargs: bool) -> int:
        return sum(p.numel() for n, p in _model(small_backbone, **kwargs).named_parameters() if p.requires_grad)

    full = count()
    b_t = d_v * (d_v // 16) + d_v // 16 + (d_v // 16) * m * d_t + m * d_t
    b_v = d_t * d_v + d_v
    b_vt = depth * (d_t * d_v + d_v)
    assert full == b_t + b_v + b_vt
    assert count(use_bt=False) == full - b_t
    assert count(use_bv=False) == full - b_v
    assert count(use_bvt=False) == full - b_vt
    assert count(use_bt=False, use_bv=False, use_bvt=False) == 0


@pytest.mark.parametrize(("visual", "text", "expected"), [(12, 12, [0, 1, 11]), (24, 12, [0, 0, 11])])
def test_layer_correspondence(visual: int, text: int, expected: list[int]) -> None:
    assert [text_layer_for(layer, visual, text) for layer in (1, 2, visual)] == expected


def test_map_loss_matches_hand_computation() -> None:
    probs_anom = torch.rand(2, 1, 8, 8)
    probs = torch.cat([1 - probs_anom, probs_anom], dim=1)
    mask = torch.rand(2, 8, 8) > 0.5
    gt = mask.float().unsqueeze(1)
    onehot = torch.cat([1 - gt, gt], dim=1)
    p_t = (probs * onehot).sum(1)
    focal = (-((1 - p_t) ** 2) * p_t.log()).mean()
    inter = (probs * onehot).sum((2, 3))
    dice = (1 - (2 * inter + 1e-5) / (probs.sum((2, 3)) + onehot.sum((2, 3)) + 1e-5)).mean()
    assert torch.allclose(MapLoss()(probs, mask), focal + dice, atol=1e-5)
