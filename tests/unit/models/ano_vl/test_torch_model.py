# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnoVLModel against direct open_clip / scipy / kornia computations: prompts, V-V map, views, test-time adaptation.

On the tiny test backbone (12 blocks like a ViT-B, 4x4 patches at 32 px): nothing here depends on ViT-B-16's widths.
"""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.ano_vl import AnoVLModel
from anomalib_medclip.models.ano_vl.torch_model import augmented_views
from anomalib_medclip.prompts import domain_sentences

DOMAINS = ("photo",)  # 22 templates instead of 66 keep the text encoding short


@pytest.fixture(scope="module")
def tiny_backbone() -> CLIPBackbone:
    return CLIPBackbone("ViT-tiny-test", None, image_size=32)


@pytest.fixture(scope="module")
def model(tiny_backbone: CLIPBackbone) -> AnoVLModel:
    model = AnoVLModel(tiny_backbone, domains=DOMAINS, tta_steps=0, augmented_score=False).eval()
    model.setup_text("toy")
    return model


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_domain_aware_sentences() -> None:
    normal, anomalous = domain_sentences("bottle")
    assert (len(normal), len(anomalous)) == (462, 462)
    assert len(set(normal) | set(anomalous)) == 924
    assert normal[:2] == [
        "a cropped industrial photo of the normal bottle",
        "a cropped industrial photo of the flawless bottle",
    ]
    assert "an industrial image of a large bottle with defect" in anomalous
    assert "a manufacturing image of the blemished bottle for anomaly detection" in anomalous
    assert "a blurry textural photo of a abnormal carpet" in domain_sentences("carpet")[1]
    medical = domain_sentences("brain MRI scan", ["MRI scan", "axial slice"])[0]
    assert len(medical) == 2 * 22 * 7
    assert "an MRI scan of the small normal brain MRI scan" in medical
    assert "an axial slice of a unblemished brain MRI scan for visual inspection" in medical
    with pytest.raises(ValueError, match="non-empty"):
        domain_sentences(" ")


def test_text_features_average_raw_embeddings(model: AnoVLModel) -> None:
    clip = model.backbone.clip
    normal, anomalous = domain_sentences("toy", DOMAINS)
    with torch.no_grad():
        raw = [clip.encode_text(model.backbone.tokenize(group)) for group in (normal, anomalous)]
    expected = torch.stack([F.normalize(r.mean(0), dim=-1) for r in raw], dim=1)
    text, sentences = model.text_features()
    assert torch.allclose(text, expected, atol=1e-5)
    assert torch.allclose(sentences, F.normalize(torch.cat(raw), dim=-1), atol=1e-5)
    mean_of_normalised = torch.stack([F.normalize(F.normalize(r, dim=-1).mean(0), dim=-1) for r in raw], dim=1)
    assert (mean_of_normalised - expected).abs().max() > 1e-4  # the order of mean and norm is the original's


def test_map_and_score_equal_direct_computation(model: AnoVLModel) -> None:
    clip, visual = model.backbone.clip, model.backbone.clip.visual
    images = _images(2, 0)
    with torch.no_grad():
        out = model(images)
        x = visual.ln_pre(model.backbone.embed_patches(images))
        vv = x
        (_, tokens, width), heads = x.shape, visual.transformer.resblocks[0].attn.num_heads
        for block in visual.transformer.resblocks:  # the value-value stream from layer 1 on (a 12-block tower)
            _, _, v = F.linear(block.ln_1(x), block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, -1)
            v = v.reshape(2, tokens, heads, width // heads).transpose(1, 2)
            attention = (v @ v.transpose(-1, -2) / (width // heads) ** 0.5).softmax(-1) @ v
            vv = vv + block.attn.out_proj(attention.transpose(1, 2).reshape(2, tokens, width))
            x = block(x)
        features = F.normalize(visual.ln_post(vv[:, 1:]) @ visual.proj, dim=-1)
        text = model.text_features()[0]
        grid = round((tokens - 1) ** 0.5)
        probs = (features @ text).softmax(-1)[..., 1].reshape(2, grid, grid).numpy()
        boxed = torch.from_numpy(np.stack([ndimage.uniform_filter(p, size=3, mode="nearest") for p in probs]))
        expected_map = F.interpolate(boxed[:, None], size=32, mode="bilinear", align_corners=True)
        score = (F.normalize(clip.encode_image(images), dim=-1) @ text).softmax(-1)[:, 1]
    assert torch.allclose(out.anomaly_map, expected_map, atol=1e-6)
    assert torch.allclose(out.pred_score, score, atol=1e-6)


def test_augmented_views_and_score(tiny_backbone: CLIPBackbone, model: AnoVLModel) -> None:
    images = _images(2, 1)
    views = augmented_views(images).reshape(21, 2, 3, 32, 32)
    assert torch.equal(views[16], images.flip(-1))
    assert torch.allclose(views[17], kornia.color.rgb_to_grayscale(images).expand(-1, 3, -1, -1), atol=1e-6)
    assert torch.equal(views[18], torch.rot90(images, 1, dims=(-2, -1)))
    # theta (0.1, 0.1) samples 0.1 normalised units further on: the content moves back by 0.1 * (S - 1) / 2 px
    shift = torch.full((2, 2), -0.1 * 31 / 2)
    moved = kornia.geometry.transform.translate(images, shift, padding_mode="reflection", align_corners=True)
    assert torch.allclose(views[12], moved, atol=1e-4)
    augmented = AnoVLModel(tiny_backbone, domains=DOMAINS, tta_steps=0)
    augmented.setup_text("toy")
    with torch.no_grad():
        out = augmented(images)
        everything = torch.cat([images[None], views]).flatten(0, 1)
        text = model.text_features()[0]
        probs = (F.normalize(model.backbone.clip.encode_image(everything), dim=-1) @ text).softmax(-1)
    assert torch.allclose(out.pred_score, probs[:, 1].reshape(22, 2).mean(0), atol=1e-6)


def test_test_time_adaptation_is_per_image_and_works_in_inference_mode(
    tiny_backbone: CLIPBackbone, model: AnoVLModel
) -> None:
    adapted = AnoVLModel(tiny_backbone, domains=DOMAINS, tta_steps=5, augmented_score=False)
    adapted.setup_text("toy")
    weight, bias = adapted.tta_init()
    bound = 1 / np.sqrt(model.backbone.embed_dim)
    assert weight.shape == (2 * 22 * 7, model.backbone.embed_dim)
    assert float(weight.abs().max()) <= bound
    assert float(bias.abs().max()) <= bound
    images = _images(3, 2)
    with torch.inference_mode():  # anomalib's test loop runs in inference mode
        batch = adapted(images)
        singles = [adapted(image[None]) for image in images]
    assert torch.allclose(batch.anomaly_map, torch.cat([s.anomaly_map for s in singles]), atol=1e-6)
    with torch.no_grad():
        plain = model(images)
    assert torch.equal(batch.pred_score, plain.pred_score)
    assert (batch.anomaly_map - plain.anomaly_map).abs().max() > 1e-6


def test_bad_settings_raise(tiny_backbone: CLIPBackbone) -> None:
    with pytest.raises(ValueError, match=r"vv_from=13 must be in 1\.\.12"):
        AnoVLModel(tiny_backbone, vv_from=13)
    with pytest.raises(RuntimeError, match="setup_text"):
        AnoVLModel(tiny_backbone)(_images(1, 0))
