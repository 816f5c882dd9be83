# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""VanillaCLIPModel against a direct open_clip computation (tiny backbone, 4x4 patches); batch == single images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components import quarter_layers
from anomalib_medclip.models.vanilla_clip import VanillaCLIPModel
from anomalib_medclip.prompts import state_prompts


@pytest.fixture(scope="module")
def model() -> VanillaCLIPModel:
    model = VanillaCLIPModel(CLIPBackbone("ViT-tiny-test", None, image_size=32), map_layers=(6, 12), smoothing_sigma=0)
    model.setup_text("brain MRI scan")
    return model.eval()


def test_scores_and_maps_equal_direct_open_clip_computation(model: VanillaCLIPModel) -> None:
    clip = model.backbone.clip
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    normal, anomalous = state_prompts("brain MRI scan")
    with torch.no_grad():
        out = model(images)
        text = F.normalize(clip.encode_text(model.backbone.tokenize([*normal, *anomalous])), dim=-1)
        image = F.normalize(clip.encode_image(images), dim=-1)
        expected = (clip.logit_scale.exp() * image @ text.T).softmax(-1)[:, 1]
        inter = clip.visual.forward_intermediates(images, indices=[5, 11], output_fmt="NLC", intermediates_only=True)
        layer_maps = []
        for tokens in inter["image_intermediates"]:
            patches = F.normalize(clip.visual.ln_post(tokens) @ clip.visual.proj, dim=-1)
            layer_maps.append((clip.logit_scale.exp() * patches @ text.T).softmax(-1)[..., 1].reshape(3, 1, 4, 4))
        ref_map = F.interpolate(torch.stack(layer_maps).mean(0), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(out.pred_score, expected, atol=1e-5)
    assert out.anomaly_map.shape == (3, 1, 32, 32)
    assert torch.allclose(out.anomaly_map, ref_map, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.0, 4.0])
def test_batch_equals_single_images(model: VanillaCLIPModel, sigma: float) -> None:
    smoothed = VanillaCLIPModel(model.backbone, map_layers=(3, 12), smoothing_sigma=sigma)
    smoothed.setup_text("liver CT scan")
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        batch = smoothed(images)
        singles = [smoothed(image[None]) for image in images]
    assert torch.allclose(batch.pred_score, torch.cat([s.pred_score for s in singles]), atol=1e-5)
    assert torch.allclose(batch.anomaly_map, torch.cat([s.anomaly_map for s in singles]), atol=1e-5)


def test_prompt_ensemble_averages_normalised_features(model: VanillaCLIPModel) -> None:
    ensemble = VanillaCLIPModel(model.backbone, prompt_ensemble=True)
    ensemble.setup_text("chest X-ray")
    normal, _ = state_prompts("chest X-ray", ensemble=True)
    expected = F.normalize(model.backbone.encode_fixed_text(normal).mean(0), dim=-1)
    assert torch.allclose(ensemble.text_features()[0], expected, atol=1e-6)
    assert ensemble(torch.randn(1, 3, 32, 32)).anomaly_map is None


def test_unset_text_features_raise(model: VanillaCLIPModel) -> None:
    with pytest.raises(RuntimeError, match=r"setup_text\(object_name\)"):
        VanillaCLIPModel(model.backbone)(torch.randn(1, 3, 32, 32))


def test_quarter_layers() -> None:
    assert quarter_layers(12) == (3, 6, 9, 12)
    assert quarter_layers(24) == (6, 12, 18, 24)
