# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""BiomedCLIP's tower kinds (timm ViT + Hugging Face BERT) on ``BiomedCLIP-tiny-test``, against timm's and
transformers' own forward passes and hand-written loops. Equality with ``encode_image``/``encode_text`` is in
``test_clip.py::test_layerwise_towers_equal_open_clip_encoders``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone, loading, resize_positional_embedding
from anomalib_medclip.backbones.loading import TINY_BIOMED_BACKBONE

TEXTS = ["a photo of a normal brain MRI scan", "a photo of an anomalous brain MRI scan", "flawless"]


@pytest.fixture(scope="module")
def biomed() -> CLIPBackbone:
    return CLIPBackbone(TINY_BIOMED_BACKBONE, None)


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_shape_and_tokeniser(biomed: CLIPBackbone) -> None:
    assert (biomed.visual_depth, biomed.text_depth, biomed.visual_width, biomed.text_width) == (4, 2, 64, 64)
    assert (biomed.embed_dim, biomed.image_size, biomed.num_patches) == (32, 32, 16)
    vocab = (Path(loading.__file__).parent / "configs" / TINY_BIOMED_BACKBONE / "vocab.txt").read_text().split()
    tokens = biomed.tokenize(["X X Object."])
    assert tokens.shape == (1, 256)  # BiomedCLIP's context
    words = [vocab[i] for i in tokens[0, :6]]
    assert words == ["[CLS]", "x", "x", "object", ".", "[SEP]"]  # WordPiece, lower-cased, [CLS] at 0
    assert not tokens[0, 6:].any()  # [PAD] = 0
    assert biomed.text_tower.lengths(tokens).tolist() == [6]
    assert biomed.text_tower.pooled_position(tokens).tolist() == [0]


def test_text_states_equal_transformers_hidden_states(biomed: CLIPBackbone) -> None:
    """Per-layer [CLS] states = BertModel's own hidden states; the argmax token is not the last one (no EOT cut)."""
    tokens = biomed.tokenize(TEXTS)
    assert (tokens.argmax(-1) + 1 < biomed.text_tower.lengths(tokens)).any()  # CLIP's EOT rule would cut here
    bert = biomed.clip.text.transformer
    with torch.no_grad():
        features, states = biomed.encode_text_with_states(tokens, normalize=True)
        ref = bert(input_ids=tokens, attention_mask=(tokens != 0).long(), output_hidden_states=True).hidden_states
        pooled = biomed.encode_text(tokens, project=False)
    assert len(states) == len(ref) == 3
    for ours, theirs in zip(states, ref, strict=True):
        assert (ours - theirs[:, 0]).abs().max() < 1e-5
    assert (pooled - ref[-1][:, 0]).abs().max() < 1e-5  # cls_last_hidden_state_pooler, before the projection
    expected = F.normalize(biomed.clip.encode_text(tokens), dim=-1)
    assert (features - expected).abs().max() < 1e-5


def test_padding_is_masked_and_batch_equals_singles(biomed: CLIPBackbone) -> None:
    tokens = biomed.tokenize(TEXTS)
    words = biomed.token_embeddings(tokens)
    noisy = words.clone()
    noisy[tokens == 0] = torch.randn_like(noisy[tokens == 0])  # garbage in every padded slot
    with torch.no_grad():
        batch = biomed.encode_text(tokens)
        assert (biomed.encode_text(tokens, embeddings=noisy) - batch).abs().max() < 1e-5
        for row, text in enumerate(TEXTS):
            assert (biomed.encode_text(biomed.tokenize([text])) - batch[row]).abs().max() < 1e-5
        assert torch.allclose(biomed.encode_fixed_text(TEXTS), F.normalize(batch, dim=-1), atol=1e-5)


def test_deep_prompts_go_after_cls_and_move_the_output(biomed: CLIPBackbone) -> None:
    """Replacing positions 1..m before layer 2 = a hand-written loop over BERT layers with the padding mask."""
    tokens = biomed.tokenize(TEXTS[:2])
    prompt = torch.randn(1, 3, biomed.text_width, generator=torch.Generator().manual_seed(1))
    bert = biomed.clip.text.transformer
    with torch.no_grad():
        plain = biomed.encode_text(tokens)
        ours = biomed.encode_text(tokens, deep_prompts={2: prompt})
        added = biomed.encode_text(tokens, deep_prompts={2: prompt}, additive=True)
        x = bert.embeddings(input_ids=tokens)
        mask = torch.zeros(2, 1, 1, tokens.shape[1]).masked_fill((tokens == 0)[:, None, None], float("-inf"))
        first, second = bert.encoder.layer
        x = first(x, mask)
        x_add = x.clone()
        x_add[:, 1:4] += prompt[0]
        x[:, 1:4] = prompt[0]
        ref = biomed.clip.text.proj(second(x, mask)[:, 0])
        ref_add = biomed.clip.text.proj(second(x_add, mask)[:, 0])
    assert (ours - ref).abs().max() < 1e-5
    assert (added - ref_add).abs().max() < 1e-5
    assert (ours - plain).abs().max() > 1e-3


def test_text_block_hooks_change_what_later_bert_layers_see(biomed: CLIPBackbone) -> None:
    tokens = biomed.tokenize(TEXTS[:2])
    hook = {1: lambda x: 0.8 * x + 0.1 * x.flip(-1)}
    bert = biomed.clip.text.transformer
    with torch.no_grad():
        ours = biomed.encode_text(tokens, block_hooks=hook, project=False)
        plain = biomed.encode_text(tokens, project=False)
        mask = torch.zeros(2, 1, 1, tokens.shape[1]).masked_fill((tokens == 0)[:, None, None], float("-inf"))
        first, second = bert.encoder.layer
        ref = second(hook[1](first(bert.embeddings(input_ids=tokens), mask)), mask)[:, 0]
    assert (ours - ref).abs().max() < 1e-5
    assert (ours - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"Text layers \[3\] are out of range 1..2"):
        biomed.encode_text(tokens, block_hooks={3: hook[1]})


def test_learnable_context_replaces_word_embeddings(biomed: CLIPBackbone) -> None:
    tokens = biomed.tokenize(["X X X object."])
    words = biomed.token_embeddings(tokens)
    context = torch.randn(1, 3, biomed.text_width, generator=torch.Generator().manual_seed(2))
    learned = torch.cat([words[:, :1], context, words[:, 4:]], dim=1)
    bert = biomed.clip.text.transformer
    with torch.no_grad():
        ours = biomed.encode_text(tokens, embeddings=learned)
        ref = bert(inputs_embeds=learned, attention_mask=(tokens != 0).long()).last_hidden_state[:, 0]
        same = biomed.encode_text(tokens, embeddings=words.clone())
    assert (ours - biomed.clip.text.proj(ref)).abs().max() < 1e-5
    assert torch.equal(same, biomed.encode_text(tokens))
    assert (ours - same).abs().max() > 1e-3


def test_intermediate_tokens_visual_prompts_and_hooks_on_timm(biomed: CLIPBackbone) -> None:
    """Layer tokens = timm's ``forward_intermediates``; prompts appended and replaced; hooks change later layers."""
    trunk, head = biomed.clip.visual.trunk, biomed.clip.visual.head
    images = _images()
    p1, p3 = torch.randn(1, 2, 64), torch.randn(2, 2, 64)
    hook = {2: lambda x: 0.8 * x + 0.1 * x.flip(-1)}
    with torch.no_grad():
        out = biomed.encode_image(images, out_layers=(2, 4))
        ref = trunk.forward_intermediates(images, indices=[1, 3], output_fmt="NLC", intermediates_only=True)
        prompted = biomed.encode_image(images, out_layers=(4,), visual_prompts={1: p1, 3: p3}, block_hooks=hook)
        x = trunk.norm_pre(trunk._pos_embed(trunk.patch_embed(images)))
        for layer, block in enumerate(trunk.blocks, start=1):
            if layer in (1, 3):
                x = torch.cat([x[:, :17], (p1 if layer == 1 else p3).expand(2, -1, -1)], dim=1)
            x = hook[2](block(x)) if layer == 2 else block(x)
        pooled = head(trunk.norm(x)[:, 0])
    for ours, theirs in zip(out.patch_tokens, ref, strict=True):
        assert (ours - theirs).abs().max() < 1e-5  # timm returns the patch tokens alone
    assert (prompted.patch_tokens[0] - x[:, 1:17]).abs().max() < 1e-5
    assert (prompted.pooled - pooled).abs().max() < 1e-5
    assert (prompted.pooled - out.pooled).abs().max() > 1e-3
    # the projection of a final CLS token is the pooled image embedding (BiomedCLIP pools the CLS token)
    assert (biomed.project_tokens(out.final_cls) - out.pooled).abs().max() < 1e-5
    assert (biomed.project_tokens(out.final_cls, final_norm=False) - head(out.final_cls)).abs().max() < 1e-5


def test_value_value_path_on_timm_attention(biomed: CLIPBackbone) -> None:
    """h_vv = h_{s-1} + sum_l VV_l(norm1(h_{l-1})) with VV = softmax(v v^T / sqrt(d)) v through ``attn.proj``."""
    trunk = biomed.clip.visual.trunk
    images = _images(1)
    with torch.no_grad():
        out = biomed.encode_image(images, out_layers=(4,), vv_layers=(3, 4))
        x = biomed._embed_image(images)
        x = trunk.blocks[1](trunk.blocks[0](x))
        vv = x.clone()
        for block in trunk.blocks[2:]:
            v = block.attn.qkv(block.norm1(x)).reshape(1, 17, 3, 2, 32)[:, :, 2].transpose(1, 2)
            weights = (v @ v.transpose(-1, -2) / 32**0.5).softmax(-1)
            vv = vv + block.attn.proj((weights @ v).transpose(1, 2).reshape(1, 17, 64))
            x = block(x)
    assert (out.patch_tokens[0] - vv[:, 1:]).abs().max() < 1e-5
    assert (out.pooled - biomed.clip.encode_image(images)).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["bilinear", "bicubic-antialias"])
def test_non_native_size_resizes_timm_position_embedding(mode: str, biomed: CLIPBackbone) -> None:
    backbone = CLIPBackbone(TINY_BIOMED_BACKBONE, None, image_size=64, pos_embed_mode=mode)
    resized = backbone.clip.visual.trunk.pos_embed[0]
    assert resized.shape == (65, 64)
    assert torch.equal(resized, resize_positional_embedding(biomed.clip.visual.trunk.pos_embed[0], 8, mode))
    images = _images(2, 64)
    with torch.no_grad():
        out = backbone.encode_image(images, out_layers=(4,))
        assert (out.pooled - backbone.clip.encode_image(images)).abs().max() < 1e-5  # timm runs at 64 px too
    assert out.patch_tokens[0].shape == (2, 64, 64)


def test_unfreeze_last_timm_blocks(biomed: CLIPBackbone) -> None:
    backbone = CLIPBackbone(TINY_BIOMED_BACKBONE, None)
    assert not any(p.requires_grad for p in backbone.parameters())
    params = backbone.unfreeze_last_visual_blocks(1)
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert len(params) == len(trainable) > 0
    assert all(n.startswith("clip.visual.trunk.blocks.3.") for n in trainable)
    assert biomed.identity() == CLIPBackbone(TINY_BIOMED_BACKBONE, None).identity()  # seeded: same fingerprint


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *_: None if name == "transformers" else real(name))
    with pytest.raises(ImportError, match=r"optional 'biomed' extra: `pip install 'anomalib-medclip\[biomed\]'`"):
        CLIPBackbone(TINY_BIOMED_BACKBONE, None)


def test_other_tower_kinds_are_refused_by_name() -> None:
    with pytest.raises(NotImplementedError, match="'RN50' has a ModifiedResNet image tower; layer-wise features need"):
        CLIPBackbone("RN50", None, image_size=64)
