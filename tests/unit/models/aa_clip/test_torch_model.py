# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AACLIPModel against direct open_clip / kornia computations: anchors, maps, teacher, stages, official files."""

from __future__ import annotations

from pathlib import Path

import kornia
import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.aa_clip.torch_model import AACLIPModel
from anomalib_medclip.prompts import aa_clip_sentences

SIZE = 64  # 8x8 patch grid on the tiny backbone: room for the original's 9x9 blur kernel


@pytest.fixture(scope="module")
def backbone() -> CLIPBackbone:
    return CLIPBackbone("ViT-tiny-test", None, image_size=SIZE)


@pytest.fixture(scope="module")
def model(backbone: CLIPBackbone) -> AACLIPModel:
    torch.manual_seed(0)
    model = AACLIPModel(backbone)
    model.setup_text("brain MRI scan")
    return model.eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _adapt(adapter: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    a = adapter(x)
    return 0.1 * a * x.norm(dim=-1, keepdim=True) / a.norm(dim=-1, keepdim=True) + 0.9 * x


def test_sentences_are_the_originals() -> None:
    normal, abnormal = aa_clip_sentences("scan")
    assert normal == ["scan.", "a photo of scan.", "a scan.", "a photo of a scan.", "the scan.", "a photo of the scan."]
    assert abnormal[:2] == ["a damaged scan.", "a photo of a damaged scan."]
    assert len(abnormal) == 10
    assert abnormal[-1] == "a photo of a scan with damage."


def test_defaults_follow_the_tower(model: AACLIPModel, backbone: CLIPBackbone) -> None:
    """Quarters of the 12-layer tiny towers (the original's 6/12/18/24, 6 and 3 on ViT-L); widths from the backbone."""
    assert model.levels == (3, 6, 9, 12)
    assert (model.image_adapt_until, model.text_adapt_until, model.teacher_from) == (3, 3, 3)
    assert model.image_adapter["seg_proj"][0].fc.weight.shape == (backbone.embed_dim, backbone.visual_width)
    assert model.text_adapter[-1].fc[0].weight.shape == (backbone.embed_dim, backbone.text_width)
    with pytest.raises(ValueError, match="levels"):
        AACLIPModel(backbone, levels=(3, 13))
    with pytest.raises(ValueError, match="smoothing_kernel=17"):
        AACLIPModel(backbone, smoothing_kernel=17)


def test_anchors_equal_a_manual_adapted_text_tower(model: AACLIPModel, backbone: CLIPBackbone) -> None:
    clip = backbone.clip
    normal, abnormal = aa_clip_sentences("brain MRI scan")
    tokens = backbone.tokenize([*normal, *abnormal])
    with torch.no_grad():
        x = clip.token_embedding(tokens) + clip.positional_embedding  # all 77 positions, no truncation
        for layer, block in enumerate(clip.transformer.resblocks, start=1):
            x = block(x, attn_mask=clip.attn_mask)
            if layer <= 3:
                x = _adapt(model.text_adapter[layer - 1], x)
        x = clip.ln_final(x)[torch.arange(len(tokens)), tokens.argmax(-1)]
        features = F.normalize(model.text_adapter[-1](x), dim=-1)
        expected = torch.stack([F.normalize(features[:6].mean(0), dim=-1), F.normalize(features[6:].mean(0), dim=-1)])
        assert (model.text_features() - expected).abs().max() < 1e-5


def test_maps_and_scores_equal_a_manual_computation(model: AACLIPModel, backbone: CLIPBackbone) -> None:
    visual, images = backbone.clip.visual, _images(2)
    adapters, seg_proj = model.image_adapter["layer_adapters"], model.image_adapter["seg_proj"]
    with torch.no_grad():
        text = model.text_features()
        x = torch.cat([visual.conv1(images).flatten(2).transpose(1, 2)], dim=1)
        x = torch.cat([visual.class_embedding.expand(2, 1, -1), x], dim=1) + visual.positional_embedding
        x = visual.ln_pre(x)
        expected = torch.zeros(2, SIZE, SIZE)
        for layer, block in enumerate(visual.transformer.resblocks, start=1):
            x = block(x)
            if layer <= 3:
                x = _adapt(adapters[layer - 1], x)
            if layer in (3, 6, 9, 12):
                tokens = F.normalize(seg_proj[layer // 3 - 1](visual.ln_post(x[:, 1:])), dim=-1)
                logits = (100 * tokens @ text.T).transpose(1, 2).reshape(2, 2, 8, 8)
                level = kornia.filters.gaussian_blur2d((logits[:, 1:] + 1 - logits[:, :1]) / 2, (9, 9), (1.5, 1.5))
                expected += F.interpolate(level, size=(SIZE, SIZE), mode="bilinear", align_corners=True)[:, 0]
        out = model(images)
    assert out.anomaly_map.shape == (2, 1, SIZE, SIZE)
    assert out.pred_score.shape == (2,)
    assert (out.anomaly_map[:, 0] - expected).abs().max() < 1e-4 * expected.abs().max()
    assert torch.allclose(out.pred_score, expected.amax(dim=(1, 2)), rtol=1e-5)
    assert expected.std() > 1e-3


def test_batch_equals_single_images(model: AACLIPModel) -> None:
    images = _images(3, seed=1)
    with torch.no_grad():
        batch = model(images)
        singles = [model(image[None]) for image in images]
        teacher = model.teacher_tokens(images)
        teacher_singles = torch.cat([model.teacher_tokens(image[None]) for image in images])
    assert (batch.anomaly_map - torch.cat([s.anomaly_map for s in singles])).abs().max() < 1e-5
    assert (batch.pred_score - torch.cat([s.pred_score for s in singles])).abs().max() < 1e-5
    assert (teacher - teacher_singles).abs().max() < 1e-5


def test_teacher_batch_mixing_is_the_originals_cross_image_attention(backbone: CLIPBackbone) -> None:
    """One image attends to itself only (= per image); two images mix, position by position."""
    torch.manual_seed(0)
    mixing = AACLIPModel(backbone, teacher_batch_mixing=True)
    torch.manual_seed(0)
    plain = AACLIPModel(backbone)
    images = _images(2, seed=2)
    with torch.no_grad():
        assert (mixing.teacher_tokens(images[:1]) - plain.teacher_tokens(images[:1])).abs().max() < 1e-5
        assert (mixing.teacher_tokens(images) - plain.teacher_tokens(images)).abs().max() > 1e-3
        # position-wise softmax over the batch: a batch and its reversal give the reversed tokens
        assert (mixing.teacher_tokens(images.flip(0)).flip(0) - mixing.teacher_tokens(images)).abs().max() < 1e-5


def test_stages_train_their_own_adapters(backbone: CLIPBackbone) -> None:
    torch.manual_seed(0)
    model = AACLIPModel(backbone)
    model.setup_text("toy")
    model.train()
    images = _images(2, seed=3)
    model.set_stage(1)
    probs, text = model.text_stage_outputs(images)
    assert probs.shape == (2, 2, SIZE, SIZE)
    assert torch.allclose(probs.sum(1), torch.ones(2, SIZE, SIZE))
    (probs[:, 1].mean() + (text[0] @ text[1]) ** 2).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.text_adapter.parameters())
    assert all(p.grad is None for p in model.image_adapter.parameters())
    model.zero_grad(set_to_none=True)
    model.set_stage(2)
    logits, maps = model.image_stage_outputs(images)
    assert logits.shape == (2, 2)
    assert len(maps) == 4
    (logits.sum() + sum(m[:, 1].mean() for m in maps)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.image_adapter.parameters())
    assert all(p.grad is None for p in model.text_adapter.parameters())
    with pytest.raises(ValueError, match="stages 1"):
        model.set_stage(3)


def test_official_files_round_trip(model: AACLIPModel, backbone: CLIPBackbone, tmp_path: Path) -> None:
    image_path = model.save_official_checkpoint(tmp_path / "image_adapter_4.pth", epoch=4)
    text_path = tmp_path / "text_adapter.pth"
    assert image_path == tmp_path / "image_adapter_4.pth"
    assert torch.load(text_path, weights_only=True)["epoch"] == 4
    saved = torch.load(image_path, weights_only=True)
    assert saved["epoch"] == 4
    assert set(saved["image_adapter"]) == set(model.image_adapter.state_dict())
    assert "layer_adapters.0.fc.0.weight" in saved["image_adapter"]
    assert "det_proj.fc.weight" in saved["image_adapter"]
    torch.manual_seed(5)
    other = AACLIPModel(backbone)
    other.setup_text("brain MRI scan")
    other.load_official_checkpoint(image_path, text_path)
    with torch.no_grad():
        images = _images(2, seed=4)
        assert torch.equal(other.eval()(images).anomaly_map, model(images).anomaly_map)


def test_official_files_load_strictly(
    model: AACLIPModel, backbone: CLIPBackbone, small_backbone: CLIPBackbone, tmp_path: Path
) -> None:
    image_path = model.save_official_checkpoint(tmp_path / "image_adapter.pth")
    text_path = tmp_path / "text_adapter.pth"
    with pytest.raises(ValueError, match=r"missing \['det_proj.fc.0.weight'.*unexpected \['det_proj.fc.weight'"):
        AACLIPModel(backbone, proj_relu=True).load_official_checkpoint(image_path)  # the original's --relu files
    with pytest.raises(ValueError, match=r"missing.*layer_adapters\.3\.fc\.0\.weight"):
        AACLIPModel(backbone, image_adapt_until=4).load_official_checkpoint(image_path)
    wide = AACLIPModel(small_backbone, smoothing_kernel=1)  # ViT-B-16: another width
    with pytest.raises(ValueError, match=r"'layer_adapters.0.fc.0.weight'\] has shape \(64, 64\), expected \(768, 768"):
        wide.load_official_checkpoint(image_path, text_path)
    with pytest.raises(ValueError, match="not an AA-CLIP checkpoint"):
        model.load_official_checkpoint(text_path)  # a text file where the image file belongs
