# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIPModel against direct open_clip computations: prompts, V-V maps, scores, gradients, official files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.anomaly_clip import AnomalyCLIPModel
from anomalib_medclip.prompts import prompt_sentences


@pytest.fixture(scope="module")
def model(small_backbone: CLIPBackbone) -> AnomalyCLIPModel:
    torch.manual_seed(0)
    model = AnomalyCLIPModel(small_backbone, map_layers=(6, 12), vv_from=3)
    with torch.no_grad():  # larger prompts than the N(0, 0.02) init give maps far from uniform
        model.ctx_neg.normal_(std=1.0)
    return model.eval()


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _full_length_text(model: AnomalyCLIPModel) -> torch.Tensor:
    """Text features computed on open_clip's modules at 77 tokens, prompts written into the sequence by hand."""
    clip = model.backbone.clip
    tokens = model.tokens
    x = clip.token_embedding(tokens)
    x[:, 1:13] = torch.stack([model.ctx_pos, model.ctx_neg])
    x = x + clip.positional_embedding
    for layer, block in enumerate(clip.transformer.resblocks, start=1):
        if 2 <= layer <= 9:
            x = x.clone()
            x[:, 1:5] = model.deep_prompts[layer - 2].half().float()
        x = block(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)[torch.arange(2), tokens.argmax(-1)] @ clip.text_projection
    return F.normalize(x, dim=-1)


def test_prompts_and_text_features(model: AnomalyCLIPModel) -> None:
    assert prompt_sentences(3) == ("X X X object.", "X X X damaged object.")
    assert model.ctx_pos.shape == model.ctx_neg.shape == (12, model.backbone.text_width)
    assert [tuple(p.shape) for p in model.deep_prompts] == [(4, model.backbone.text_width)] * 8
    with torch.no_grad():
        assert torch.allclose(model.text_features(), _full_length_text(model), atol=1e-5)


def test_scores_and_maps_equal_direct_computation(model: AnomalyCLIPModel) -> None:
    clip = model.backbone.clip
    images = _images(3, 0)
    with torch.no_grad():
        out = model(images)
        text = _full_length_text(model)
        # original stream: open_clip's own blocks; V-V stream: sum of value-value attention outputs from layer 3 on
        x = clip.visual.ln_pre(model.backbone.embed_patches(images))
        vv, maps = None, torch.zeros(3, 1, 32, 32)
        for layer, block in enumerate(clip.visual.transformer.resblocks, start=1):
            if layer == 3:
                vv = x
            if vv is not None:
                _, _, v = F.linear(block.ln_1(x), block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, -1)
                v = v.reshape(3, 5, 12, 64).transpose(1, 2)
                attn = (v @ v.transpose(-1, -2) / 8).softmax(-1) @ v
                vv = vv + block.attn.out_proj(attn.transpose(1, 2).reshape(3, 5, 768))
            x = block(x)
            if layer in (6, 12):
                patches = F.normalize(clip.visual.ln_post(vv[:, 1:]) @ clip.visual.proj, dim=-1)
                probs = (patches @ text.T / 0.07).softmax(-1)[..., 1].reshape(3, 1, 2, 2)
                maps += F.interpolate(probs, size=(32, 32), mode="bilinear", align_corners=False)
        image = F.normalize(x[:, 0] @ clip.visual.proj, dim=-1)  # no ln_post on the CLS, as the original
        score = (image @ text.T / 0.07).softmax(-1)[:, 1]
    assert torch.allclose(out.pred_score, score, atol=1e-5)
    assert torch.allclose(out.anomaly_map, model.smoothing(maps), atol=1e-5)
    assert maps.std() > 0.01


def test_batch_equals_single_images(model: AnomalyCLIPModel) -> None:
    images = _images(4, 5)
    with torch.no_grad():
        batch = model(images)
        singles = [model(image[None]) for image in images]
    assert torch.allclose(batch.pred_score, torch.cat([s.pred_score for s in singles]), atol=1e-5)
    assert torch.allclose(batch.anomaly_map, torch.cat([s.anomaly_map for s in singles]), atol=1e-5)


def test_only_the_prompts_receive_gradients(small_backbone: CLIPBackbone) -> None:
    model = AnomalyCLIPModel(small_backbone).train()
    logits, probs = model.forward_train(_images(2, 6))
    assert len(probs) == 1
    assert probs[0].shape == (2, 2, 32, 32)
    (F.cross_entropy(logits, torch.tensor([0, 1])) + probs[0][:, 1].mean()).backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {"ctx_pos", "ctx_neg", *(f"deep_prompts.{i}" for i in range(8))}
    assert not any(p.requires_grad for p in small_backbone.parameters())


def test_text_features_are_cached_only_outside_training(small_backbone: CLIPBackbone) -> None:
    model = AnomalyCLIPModel(small_backbone).eval()
    first = model.text_features()
    assert model.text_features() is first
    model.train()
    with torch.no_grad():
        model.ctx_pos.add_(1.0)
    model.eval()
    assert not torch.allclose(model.text_features(), first)


def test_official_checkpoint_round_trip(model: AnomalyCLIPModel, tmp_path: Path) -> None:
    path = model.save_official_checkpoint(tmp_path / "epoch_15.pth")
    state = torch.load(path, weights_only=True)["prompt_learner"]
    assert state["ctx_pos"].shape == (1, 1, 12, 512)
    assert state["compound_prompt_projections.7.weight"].shape == (896, 512)
    assert state["token_suffix_neg"].shape == (1, 1, 77 - 13, 512)
    fresh = AnomalyCLIPModel(model.backbone, map_layers=(6, 12), vv_from=3).eval()
    fresh.load_official_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(fresh.text_features(), model.text_features())


def test_official_checkpoint_errors(model: AnomalyCLIPModel, tmp_path: Path, caplog) -> None:
    state = torch.load(model.save_official_checkpoint(tmp_path / "ok.pth"), weights_only=True)["prompt_learner"]
    fresh = AnomalyCLIPModel(model.backbone)
    torch.save({"trainable_linearlayer": {}}, tmp_path / "vand.pth")
    with pytest.raises(ValueError, match=r"vand.pth' is not an AnomalyCLIP checkpoint.*'trainable_linearlayer'"):
        fresh.load_official_checkpoint(tmp_path / "vand.pth")
    torch.save({"prompt_learner": {**state, "ctx_pos": torch.zeros(1, 1, 12, 768)}}, tmp_path / "vit_l.pth")
    with pytest.raises(ValueError, match=r"\['ctx_pos'\] has shape \(1, 1, 12, 768\), expected \(1, 1, 12, 512\)"):
        fresh.load_official_checkpoint(tmp_path / "vit_l.pth")
    depth_8 = {k: v for k, v in state.items() if not k.endswith(".7") and "projections.7" not in k}
    torch.save({"prompt_learner": depth_8}, tmp_path / "depth8.pth")
    with pytest.raises(ValueError, match=r"missing \['compound_prompts_text.7'\]"):
        fresh.load_official_checkpoint(tmp_path / "depth8.pth")
    other_ids = {**state, "tokenized_prompts_neg": state["tokenized_prompts_pos"]}
    torch.save({"prompt_learner": other_ids}, tmp_path / "ids.pth")
    with pytest.raises(ValueError, match="prompt token ids differ"):
        fresh.load_official_checkpoint(tmp_path / "ids.pth")
    drifted = {**state, "token_prefix_pos": state["token_prefix_pos"] + 1}
    torch.save({"prompt_learner": drifted}, tmp_path / "other_clip.pth")
    fresh.load_official_checkpoint(tmp_path / "other_clip.pth")
    assert "trained on other CLIP weights" in caplog.text


def test_bad_layer_settings_raise(small_backbone: CLIPBackbone) -> None:
    with pytest.raises(ValueError, match=r"map layers \(2,\) must lie on the value-value path, layers 3..12"):
        AnomalyCLIPModel(small_backbone, map_layers=(2,))
    with pytest.raises(ValueError, match=r"deep_depth=13 must be in 1\.\.12"):
        AnomalyCLIPModel(small_backbone, deep_depth=13)
