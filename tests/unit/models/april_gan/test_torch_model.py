# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AprilGANModel against direct open_clip computations: prompts, scores, maps, memory bank, official files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.april_gan import AprilGANModel
from anomalib_medclip.models.april_gan import torch_model as april
from anomalib_medclip.models.april_gan.lightning_model import original_activation
from anomalib_medclip.prompts import ensemble_sentences

LAYERS = (3, 6, 9, 12)


@pytest.fixture(scope="module")
def model(small_backbone: CLIPBackbone) -> AprilGANModel:
    torch.manual_seed(0)
    model = AprilGANModel(small_backbone, LAYERS, few_shot_layers=(6, 12))
    for linear in model.fc:  # larger weights than the default init give maps far from uniform
        torch.nn.init.normal_(linear.weight, std=0.2)
    model.setup_text("toy")
    return model.eval()


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_prompt_ensemble_sentences() -> None:
    normal, abnormal = ensemble_sentences("brain MRI scan")
    assert (len(normal), len(abnormal)) == (7 * 35, 5 * 35)
    assert len(set(normal) | set(abnormal)) == 420
    assert all("brain MRI scan" in s for s in normal + abnormal)
    assert "a photo of the small flawless brain MRI scan." in normal
    assert "this is one brain MRI scan with defect in the scene." in abnormal
    with pytest.raises(ValueError, match="non-empty"):
        ensemble_sentences(" ")


def test_text_features_equal_full_length_encoding(small_backbone: CLIPBackbone, monkeypatch) -> None:
    # a few sentences of different lengths exercise the length groups; the reference is open_clip at 77 tokens
    normal = ["a photo of a toy.", "a close-up photo of a flawless toy without any visible damage at all."]
    abnormal = ["broken toy", "a photo of the toy with a defect.", "a toy with damage."]
    monkeypatch.setattr(april, "ensemble_sentences", lambda _: (normal, abnormal))
    model = AprilGANModel(small_backbone, LAYERS)
    model.setup_text("toy")
    features = model.text_features()
    clip = small_backbone.clip
    with torch.no_grad():
        expected = [
            F.normalize(F.normalize(clip.encode_text(small_backbone.tokenize(group)), dim=-1).mean(0), dim=-1)
            for group in (normal, abnormal)
        ]
    assert features.shape == (small_backbone.embed_dim, 2)
    assert torch.allclose(features, torch.stack(expected, dim=1), atol=1e-6)


def test_scores_and_maps_equal_direct_open_clip_computation(model: AprilGANModel) -> None:
    clip, text = model.backbone.clip, model.text_features()
    images = _images(3, 0)
    with torch.no_grad():
        out = model(images)
        expected_score = (100 * F.normalize(clip.encode_image(images), dim=-1) @ text).softmax(-1)[:, 1]
        indices = [layer - 1 for layer in LAYERS]
        inter = clip.visual.forward_intermediates(images, indices=indices, output_fmt="NLC", intermediates_only=True)
        expected_map = torch.zeros(3, 1, 32, 32)
        for linear, tokens in zip(model.fc, inter["image_intermediates"], strict=True):
            logits = 100 * F.normalize(linear(tokens), dim=-1) @ text  # (3, 4, 2)
            margin = (logits[..., 1] - logits[..., 0]).reshape(3, 1, 2, 2)  # softmax of 2 = sigmoid of the margin
            expected_map += F.interpolate(margin, size=(32, 32), mode="bilinear", align_corners=True).sigmoid()
    assert torch.allclose(out.pred_score, expected_score, atol=1e-5)
    assert out.anomaly_map.shape == (3, 1, 32, 32)
    assert torch.allclose(out.anomaly_map, expected_map, atol=1e-5)
    assert expected_map.std() > 0.05  # the maps are not trivially uniform


def _with_memory(model: AprilGANModel, references: torch.Tensor) -> AprilGANModel:
    few_shot = AprilGANModel(model.backbone, LAYERS, few_shot_layers=(6, 12))
    few_shot.fc.load_state_dict(model.fc.state_dict())
    few_shot.setup_text("toy")
    few_shot.setup_memory(references)
    return few_shot.eval()


def test_few_shot_map_is_min_cosine_distance_to_memory(model: AprilGANModel) -> None:
    references, images = _images(2, 1), _images(2, 2)
    few_shot = _with_memory(model, references)
    clip = model.backbone.clip
    assert few_shot.memory_bank.shape == (2, 2 * 4, model.backbone.visual_width)
    with torch.no_grad():
        zero_shot, out = model(images), few_shot(images)
        own = few_shot(references[:1])
        inter = clip.visual.forward_intermediates
        mem = inter(references, indices=[5, 11], output_fmt="NLC", intermediates_only=True)["image_intermediates"]
        tok = inter(images, indices=[5, 11], output_fmt="NLC", intermediates_only=True)["image_intermediates"]
        expected = torch.zeros(2, 1, 32, 32)
        for m, t in zip(mem, tok, strict=True):
            cos = F.cosine_similarity(t[:, :, None], m.reshape(1, 1, 8, -1), dim=-1)  # (2, 4, 8)
            distance = (1 - cos).amin(dim=-1).reshape(2, 1, 2, 2)
            expected += F.interpolate(distance, size=(32, 32), mode="bilinear", align_corners=True)
        reference_zero_shot = model(references[:1]).anomaly_map
    assert torch.allclose(out.anomaly_map - zero_shot.anomaly_map, expected, atol=1e-5)
    assert expected.min() > 0.01
    assert torch.allclose(own.anomaly_map, reference_zero_shot, atol=1e-5)  # a reference image is its own match
    assert torch.allclose(out.pred_score, zero_shot.pred_score)  # no fusion range yet


def test_few_shot_score_fusion_uses_the_calibration_range(model: AprilGANModel) -> None:
    few_shot = _with_memory(model, _images(2, 1))
    images = _images(3, 3)
    with torch.no_grad():
        plain = few_shot(images)
        maxima = plain.anomaly_map.amax(dim=(1, 2, 3))
        few_shot.set_score_range(torch.cat([maxima, maxima + 1]))
        fused = few_shot(images)
    expected = 0.5 * (plain.pred_score + (maxima - maxima.min()) / (maxima.max() + 1 - maxima.min()))
    assert torch.allclose(fused.pred_score, expected, atol=1e-6)
    with pytest.raises(ValueError, match="Cannot normalise"):
        few_shot.set_score_range(torch.ones(4))


@pytest.mark.parametrize("few_shot", [False, True])
def test_batch_equals_single_images(model: AprilGANModel, few_shot: bool) -> None:
    tested = _with_memory(model, _images(2, 4)) if few_shot else model
    if few_shot:
        tested.set_score_range(torch.tensor([0.5, 6.0]))
    images = _images(4, 5)
    with torch.no_grad():
        batch = tested(images)
        singles = [tested(image[None]) for image in images]
    assert torch.allclose(batch.pred_score, torch.cat([s.pred_score for s in singles]), atol=1e-5)
    assert torch.allclose(batch.anomaly_map, torch.cat([s.anomaly_map for s in singles]), atol=1e-5)


def test_only_the_adapters_receive_gradients(model: AprilGANModel) -> None:
    from anomalib_medclip.models.components.losses import MapLoss

    trained = AprilGANModel(model.backbone, LAYERS)
    trained.setup_text("toy")
    mask = torch.zeros(2, 32, 32)
    mask[:, 8:20, 8:20] = 1
    loss = torch.stack([MapLoss(normal_dice=False)(p, mask) for p in trained.forward_train(_images(2, 6))]).sum()
    loss.backward()
    grads = {name: p.grad for name, p in trained.named_parameters() if p.grad is not None}
    assert set(grads) == {f"fc.{i}.{kind}" for i in range(4) for kind in ("weight", "bias")}
    assert all(g.abs().sum() > 0 for g in grads.values())
    assert not any(p.requires_grad for p in trained.backbone.parameters())


def test_official_checkpoint_round_trip(model: AprilGANModel, tmp_path: Path) -> None:
    path = model.save_official_checkpoint(tmp_path / "sub" / "epoch_3.pth")
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"trainable_linearlayer"}
    assert set(saved["trainable_linearlayer"]) == {f"fc.{i}.{k}" for i in range(4) for k in ("weight", "bias")}
    fresh = AprilGANModel(model.backbone, LAYERS)
    fresh.load_official_checkpoint(path)
    for a, b in zip(fresh.fc.parameters(), model.fc.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not list(path.parent.glob(".*tmp"))


def test_official_checkpoint_errors_name_file_and_key(model: AprilGANModel, tmp_path: Path) -> None:
    fresh = AprilGANModel(model.backbone, LAYERS)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        fresh.load_official_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pth' is not a readable torch file"):
        fresh.load_official_checkpoint(tmp_path / "text.pth")
    torch.save({"prompt_learner": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth' is not an APRIL-GAN checkpoint.*'prompt_learner'"):
        fresh.load_official_checkpoint(tmp_path / "other.pth")
    state = {f"fc.{i}.weight": torch.zeros(512, 768) for i in range(3)} | {
        f"fc.{i}.bias": torch.zeros(512) for i in range(3)
    }
    torch.save({"trainable_linearlayer": state}, tmp_path / "three.pth")
    with pytest.raises(ValueError, match=r"three.pth.*missing \['fc.3.bias', 'fc.3.weight'\]"):
        fresh.load_official_checkpoint(tmp_path / "three.pth")
    state = {f"fc.{i}.weight": torch.zeros(768, 1024) for i in range(4)} | {
        f"fc.{i}.bias": torch.zeros(768) for i in range(4)
    }
    torch.save({"trainable_linearlayer": state}, tmp_path / "vit_l.pth")
    with pytest.raises(ValueError, match=r"vit_l.pth.*'fc.0.weight'\] has shape \(768, 1024\), expected \(512, 768\)"):
        fresh.load_official_checkpoint(tmp_path / "vit_l.pth")


@pytest.mark.parametrize(
    ("backbone", "pretrained", "size", "expected"),
    [
        ("ViT-L-14-336", "openai", 518, "gelu"),
        ("ViT-L-14-336", "openai", 336, "quick_gelu"),
        ("ViT-L-14-336", "openai", None, "quick_gelu"),
        ("ViT-B-16", "laion400m_e32", 224, "gelu"),
        ("ViT-B-16-quickgelu", "metaclip_400m", 224, "quick_gelu"),
        ("ViT-B-16", None, 240, "gelu"),
        ("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", None, 224, "auto"),
    ],
)
def test_original_activation(backbone: str, pretrained: str | None, size: int | None, expected: str) -> None:
    assert original_activation(backbone, pretrained, size) == expected
