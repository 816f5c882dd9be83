# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The layer-wise towers against open_clip's own encoders, prompt insertion, V-V path, resizing, freezing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone, resize_positional_embedding

TEXTS = ["a photo of a normal brain MRI scan", "a photo of an anomalous brain MRI scan", "x"]


@pytest.mark.parametrize("name", ["ViT-B-16", "ViT-tiny-test", "BiomedCLIP-tiny-test"])
def test_layerwise_towers_equal_open_clip_encoders(name: str, check_towers) -> None:
    """At the native size. A 24-layer quick-GELU tower (ViT-L-14-336, 2 minutes on 2 cores) is checked the same way
    in ``tests/integration/backbones/test_large_towers.py``."""
    check_towers(name)


def test_text_slot_replacement_with_own_embeddings_is_identity(small_backbone: CLIPBackbone) -> None:
    tokens = small_backbone.tokenize(TEXTS[:2])
    emb = small_backbone.token_embeddings(tokens)
    pos = small_backbone.clip.positional_embedding
    with torch.no_grad():
        plain = small_backbone.encode_text(tokens)
        # the hidden state entering layer 1 at slots 1..4 is embedding + positional: replacing it with itself is a no-op
        same = small_backbone.encode_text(tokens, embeddings=emb.clone())
        changed = small_backbone.encode_text(tokens, deep_prompts={2: torch.zeros(1, 4, emb.shape[-1])})
    assert torch.equal(plain, same)
    assert (plain - changed).abs().max() > 1e-3
    assert pos.shape[0] == 77


def test_deep_text_prompts_only_touch_slots_after_sos(small_backbone: CLIPBackbone) -> None:
    """Replacing slots 1..m at layer l must equal a manual loop doing the same."""
    clip = small_backbone.clip
    tokens = small_backbone.tokenize(TEXTS[:2])
    prompt = torch.randn(1, 3, small_backbone.text_width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = small_backbone.encode_text(tokens, deep_prompts={3: prompt, 5: prompt})
        x = clip.token_embedding(tokens) + clip.positional_embedding
        for layer, block in enumerate(clip.transformer.resblocks, start=1):
            if layer in (3, 5):
                x = torch.cat([x[:, :1], prompt.expand(2, -1, -1), x[:, 4:]], dim=1)
            x = block(x, attn_mask=clip.attn_mask)
        ref = clip.ln_final(x)[torch.arange(2), tokens.argmax(-1)] @ clip.text_projection
    assert (ours - ref).abs().max() < 1e-5


def test_visual_prompts_are_appended_and_replaced(small_backbone: CLIPBackbone) -> None:
    visual = small_backbone.clip.visual
    images = torch.randn(2, 3, 32, 32)
    p1, p3 = torch.randn(1, 2, small_backbone.visual_width), torch.randn(2, 2, small_backbone.visual_width)
    with torch.no_grad():
        out = small_backbone.encode_image(images, out_layers=(4,), visual_prompts={1: p1, 3: p3})
        x = small_backbone._embed_image(images)
        n = x.shape[1]
        for layer, block in enumerate(visual.transformer.resblocks, start=1):
            if layer in (1, 3):
                x = torch.cat([x[:, :n], (p1 if layer == 1 else p3).expand(2, -1, -1)], dim=1)
            x = block(x)
            if layer == 4:
                tokens4 = x[:, 1:n]
        pooled = visual.ln_post(x[:, 0]) @ visual.proj
    assert out.patch_tokens[0].shape == (2, small_backbone.num_patches, small_backbone.visual_width)
    assert torch.allclose(out.patch_tokens[0], tokens4, atol=1e-5)
    assert torch.allclose(out.pooled, pooled, atol=1e-5)


def test_value_value_path_matches_closed_form(small_backbone: CLIPBackbone) -> None:
    """h_vv at layer L = h_{s-1} + sum_l VV_l(ln_1(h_{l-1})), with VV = softmax(v v^T / sqrt(d)) v through out_proj."""
    blocks = small_backbone.clip.visual.transformer.resblocks
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = small_backbone.encode_image(images, out_layers=(12,), vv_layers=tuple(range(9, 13)))
        x = small_backbone._embed_image(images)
        for block in blocks[:8]:
            x = block(x)
        vv = x.clone()
        for block in blocks[8:]:
            attn = block.attn
            v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)[2]
            heads = attn.num_heads
            vh = v.reshape(1, v.shape[1], heads, -1).transpose(1, 2)
            weights = (vh @ vh.transpose(-1, -2) / vh.shape[-1] ** 0.5).softmax(-1)
            vv = vv + attn.out_proj((weights @ vh).transpose(1, 2).reshape(1, v.shape[1], -1))
            x = block(x)
    assert torch.allclose(out.patch_tokens[0], vv[:, 1:], atol=1e-5)
    assert torch.allclose(out.pooled, small_backbone.clip.encode_image(images), atol=1e-5)


def test_block_hooks_change_the_stream_later_layers_see(small_backbone: CLIPBackbone) -> None:
    """A hook after layer l replaces the hidden states: equal to a manual loop applying it, in both towers."""
    visual, clip = small_backbone.clip.visual, small_backbone.clip
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    hook = {2: lambda x: 0.8 * x + 0.1 * x.flip(-1)}
    with torch.no_grad():
        out = small_backbone.encode_image(images, out_layers=(2, 3), block_hooks=hook)
        x = small_backbone._embed_image(images)
        for layer, block in enumerate(visual.transformer.resblocks, start=1):
            x = hook[2](block(x)) if layer == 2 else block(x)
            if layer == 2:
                tokens2 = x[:, 1:]
        tokens = small_backbone.tokenize(TEXTS[:2])
        text = small_backbone.encode_text(tokens, block_hooks=hook, project=False)
        plain = small_backbone.encode_text(tokens, project=False)
        t = clip.token_embedding(tokens) + clip.positional_embedding
        for layer, block in enumerate(clip.transformer.resblocks, start=1):
            t = block(t, attn_mask=clip.attn_mask)
            t = hook[2](t) if layer == 2 else t
        ref = clip.ln_final(t)[torch.arange(2), tokens.argmax(-1)]
    assert torch.allclose(out.patch_tokens[0], tokens2, atol=1e-5)
    assert torch.allclose(out.pooled, visual.ln_post(x[:, 0]) @ visual.proj, atol=1e-5)
    assert torch.allclose(text, ref, atol=1e-5)
    assert (text - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="out of range"):
        small_backbone.encode_text(tokens, block_hooks={99: hook[2]})


def test_block_overrides_replace_a_block_and_post_norm_is_ln_post(small_backbone: CLIPBackbone) -> None:
    """``f(block, x)`` runs instead of ``block(x)`` (then the block's hook); ``post_norm`` is ``ln_post`` alone."""
    visual = small_backbone.clip.visual
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def mlp_only(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x + block.mlp(block.ln_2(x))

    hook = {3: lambda x: 2 * x}
    with torch.no_grad():
        out = small_backbone.encode_image(images, out_layers=(3, 4), block_overrides={3: mlp_only}, block_hooks=hook)
        x = small_backbone._embed_image(images)
        for layer, block in enumerate(visual.transformer.resblocks, start=1):
            x = 2 * mlp_only(block, x) if layer == 3 else block(x)
            if layer == 3:
                tokens3 = x[:, 1:]
            if layer == 4:
                tokens4 = x[:, 1:]
        plain = small_backbone.encode_image(images, out_layers=(4,))
    assert torch.allclose(out.patch_tokens[0], tokens3, atol=1e-5)
    assert torch.allclose(out.patch_tokens[1], tokens4, atol=1e-5)
    assert (out.patch_tokens[1] - plain.patch_tokens[0]).abs().max() > 1e-3
    assert torch.equal(small_backbone.post_norm(tokens4), visual.ln_post(tokens4))
    assert torch.allclose(small_backbone.post_norm(tokens4) @ visual.proj, small_backbone.project_tokens(tokens4))
    with pytest.raises(ValueError, match="out of range"):
        small_backbone.encode_image(images, block_overrides={99: mlp_only})


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "bicubic-antialias"])
def test_positional_embedding_resize_modes(mode: str) -> None:
    pos = torch.randn(1 + 14 * 14, 8, generator=torch.Generator().manual_seed(0))
    out = resize_positional_embedding(pos, 4, mode)
    grid = pos[1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    kwargs = (
        {"mode": "bilinear"} if mode == "bilinear" else {"mode": "bicubic", "antialias": mode.endswith("antialias")}
    )
    ref = F.interpolate(grid, size=(4, 4), align_corners=False, **kwargs).permute(0, 2, 3, 1).reshape(16, 8)
    assert torch.equal(out[0], pos[0])
    assert torch.allclose(out[1:], ref)
    backbone = CLIPBackbone("ViT-B-16", None, image_size=64, pos_embed_mode=mode)
    assert backbone.clip.visual.positional_embedding.shape == (17, 768)
    assert backbone.encode_image(torch.randn(1, 3, 64, 64)).pooled.shape == (1, 512)


def test_everything_frozen_until_unfrozen() -> None:
    backbone = CLIPBackbone("ViT-B-16", None, image_size=32)
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.clip.training
    params = backbone.unfreeze_last_visual_blocks(2)
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert len(params) == len(trainable) > 0
    assert all(
        n.startswith(("clip.visual.transformer.resblocks.10.", "clip.visual.transformer.resblocks.11."))
        for n in trainable
    )
    with pytest.raises(ValueError, match="the image tower has 12"):
        backbone.unfreeze_last_visual_blocks(13)


def test_fixed_text_features_are_cached(small_backbone: CLIPBackbone) -> None:
    first = small_backbone.encode_fixed_text(TEXTS)
    assert small_backbone.encode_fixed_text(TEXTS) is first
    assert torch.allclose(
        first, F.normalize(small_backbone.clip.encode_text(small_backbone.tokenize(TEXTS)), dim=-1), atol=1e-5
    )


def test_random_init_is_seeded_and_fingerprinted() -> None:
    a, b = CLIPBackbone("ViT-B-16", None, image_size=32, seed=3), CLIPBackbone("ViT-B-16", None, image_size=32, seed=3)
    c = CLIPBackbone("ViT-B-16", None, image_size=32, seed=4)
    assert a.identity() == b.identity()
    assert a.fingerprint != c.fingerprint
    assert torch.equal(a.clip.visual.proj, b.clip.visual.proj)


def test_bad_inputs_raise_clear_errors(small_backbone: CLIPBackbone) -> None:
    with pytest.raises(ValueError, match="Expected images of 32x32"):
        small_backbone.encode_image(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"Layers \[13\] are out of range 1..12"):
        small_backbone.encode_image(torch.randn(1, 3, 32, 32), out_layers=(13,))
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        CLIPBackbone("ViT-B-16", None, image_size=40)


def test_text_is_not_cut_while_exporting_and_gives_the_same_features(small_backbone: CLIPBackbone, monkeypatch) -> None:
    tokens = small_backbone.tokenize(["a photo of a damaged toy", "toy"])
    cut = small_backbone.encode_text(tokens)
    lengths = []
    real_embed = small_backbone.text_tower.embed
    monkeypatch.setattr(small_backbone.text_tower, "embed", lambda w: lengths.append(w.shape[1]) or real_embed(w))
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)  # as under torch.export (ONNX/OpenVINO)
    full = small_backbone.encode_text(tokens)
    assert lengths == [tokens.shape[1]]  # no data-dependent shape in the graph
    torch.testing.assert_close(full, cut, atol=1e-5, rtol=0)
