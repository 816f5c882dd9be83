# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Tower adapters: the few steps of each tower kind that :class:`~anomalib_medclip.backbones.CLIPBackbone` runs.

The backbone's layer-wise loops (intermediate tokens, deep prompts, the value-value path, block hooks) are written
once; each adapter says how its tower embeds its input, runs one block, pools and projects. Models never see them.

Image towers:

- :class:`OpenCLIPVision`: open_clip's ``VisionTransformer`` (OpenAI/LAION CLIP, PMC ViT-L-14, QuiltNet).
- :class:`TimmVision`: open_clip's ``TimmModel`` around a timm ``VisionTransformer`` (BiomedCLIP). Its ``trunk.norm``
  plays ``ln_post``; the projection into the joint space is what the trunk's head and open_clip's ``head`` (a linear
  layer or an MLP) do to the pooled token, applied token-wise to patch tokens.

Text towers:

- :class:`CausalText`: CLIP's causal text transformer, pooled at the end-of-text (EOT) token; tokens after the longest
  EOT cannot change any pooled feature, so sequences are cut there.
- :class:`BertText`: open_clip's ``HFTextEncoder`` around a Hugging Face BERT (BiomedCLIP's PubMedBERT), bidirectional
  and pooled at ``[CLS]`` (position 0). Every token changes every state, so only padding is cut (padding is masked
  out of attention, which makes the cut exact); the per-layer "EOT state" is the ``[CLS]`` state, and deep prompts
  take positions ``1..m`` right after ``[CLS]``, as they take the positions right after SOS in CLIP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.hf_model import ClsPooler, HFTextEncoder
from open_clip.timm_model import TimmModel
from open_clip.transformer import VisionTransformer
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch import nn
from typing_extensions import override

__all__ = ["BertText", "CausalText", "OpenCLIPVision", "TextTower", "TimmVision", "VisionTower", "make_towers"]


def _heads_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Value-value self-attention ``softmax(v v^T / sqrt(d)) v`` of fused ``(B, L, 3W)`` projections, ``(B, L, W)``."""
    batch, length, width3 = qkv.shape
    v = qkv[..., 2 * width3 // 3 :].reshape(batch, length, heads, -1).transpose(1, 2)
    return F.scaled_dot_product_attention(v, v, v).transpose(1, 2).reshape(batch, length, -1)


def _mix_over_batch(v: torch.Tensor, heads: int) -> torch.Tensor:
    """Per position and head, value-value attention over the batch's images: ``(B, L, D) -> (B, L, D)``."""
    batch, length, width = v.shape
    h = v.reshape(batch, length, heads, -1).permute(1, 2, 0, 3)  # (L, heads, B, d)
    weights = (h @ h.transpose(-2, -1) * h.shape[-1] ** -0.5).softmax(dim=-1)
    return (weights @ h).permute(2, 0, 1, 3).reshape(batch, length, width)


class VisionTower:
    """What the layer-wise image loop needs from an image tower (subclasses implement it)."""

    def __init__(self, visual: nn.Module) -> None:
        self.visual = visual

    @property
    def blocks(self) -> Sequence[nn.Module]:
        """The transformer blocks, in order."""
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Token width."""
        raise NotImplementedError

    @property
    def patch_size(self) -> int:
        """Patch side in pixels."""
        raise NotImplementedError

    @property
    def positional_embedding(self) -> torch.Tensor:
        """The ``(1 + g*g, D)`` positional embedding (CLS first)."""
        raise NotImplementedError

    def set_grid(self, positional_embedding: torch.Tensor, grid: int) -> None:
        """Install a resized positional embedding for a ``grid x grid`` patch grid."""
        raise NotImplementedError

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """CLS + patch embeddings with the positional embedding, before the pre-norm, ``(B, 1 + P, D)``."""
        raise NotImplementedError

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """What runs between the embeddings and block 1 (patch dropout, pre-norm)."""
        raise NotImplementedError

    def value_value(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The block's attention branch with values as queries and keys (V-V), through its own projections."""
        raise NotImplementedError

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Image embedding in the joint space from the last block's tokens ``(B, 1 + P, D)``, as ``encode_image``."""
        raise NotImplementedError

    def project(self, tokens: torch.Tensor, *, final_norm: bool = True) -> torch.Tensor:
        """Map raw tokens ``(..., D)`` into the joint space, token-wise; ``final_norm=False`` skips ``ln_post``."""
        raise NotImplementedError

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The norm applied to the last block's tokens before the projection (``ln_post``)."""
        raise NotImplementedError

    def value_only_block(self, block: nn.Module, x: torch.Tensor, *, batch_mixing: bool) -> torch.Tensor:
        """``block(x)`` with the attention output replaced by the projected values (optionally mixed over the batch)."""
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        """Joint-space dimension."""
        raise NotImplementedError


class OpenCLIPVision(VisionTower):
    """open_clip's ``VisionTransformer``: ``conv1`` patches, ``ln_pre``, ``resblocks``, ``ln_post`` and ``proj``."""

    @override
    @property
    def blocks(self) -> Sequence[nn.Module]:
        return self.visual.transformer.resblocks

    @override
    @property
    def width(self) -> int:
        return int(self.visual.transformer.width)

    @override
    @property
    def patch_size(self) -> int:
        return int(self.visual.patch_size[0])

    @override
    @property
    def embed_dim(self) -> int:
        return int(self.visual.proj.shape[1])

    @override
    @property
    def positional_embedding(self) -> torch.Tensor:
        return self.visual.positional_embedding.data

    @override
    def set_grid(self, positional_embedding: torch.Tensor, grid: int) -> None:
        self.visual.positional_embedding = nn.Parameter(positional_embedding, requires_grad=False)
        self.visual.grid_size = (grid, grid)
        self.visual.image_size = (grid * self.patch_size, grid * self.patch_size)

    @override
    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)

    @override
    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_pre(self.visual.patch_dropout(x))

    @override
    def value_value(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        attn: nn.MultiheadAttention = block.attn
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        return block.ls_1(attn.out_proj(_heads_attention(qkv, attn.num_heads)))

    @override
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.visual._pool(x)  # noqa: SLF001  open_clip's own pooling, as encode_image
        return pooled @ self.visual.proj

    @override
    def project(self, tokens: torch.Tensor, *, final_norm: bool = True) -> torch.Tensor:
        return (self.visual.ln_post(tokens) if final_norm else tokens) @ self.visual.proj

    @override
    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_post(tokens)

    @override
    def value_only_block(self, block: nn.Module, x: torch.Tensor, *, batch_mixing: bool) -> torch.Tensor:
        attn: nn.MultiheadAttention = block.attn
        width = x.shape[-1]
        v = F.linear(block.ln_1(x), attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :])
        v = _mix_over_batch(v, attn.num_heads) if batch_mixing else v
        x = x + block.ls_1(attn.out_proj(v))
        return x + block.ls_2(block.mlp(block.ln_2(x)))


class TimmVision(VisionTower):
    """open_clip's ``TimmModel`` around a timm ``VisionTransformer`` (BiomedCLIP's ``vit_base_patch16_224``).

    ``trunk.norm`` is the final norm (``ln_post``); the projection is ``trunk.fc_norm -> trunk.head -> head``, what
    ``encode_image`` applies to the pooled token (for BiomedCLIP: identities, then a bias-free linear layer).
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__(visual)
        trunk = visual.trunk
        unsupported = [
            reason
            for reason, present in (
                ("register tokens", getattr(trunk, "reg_token", None) is not None),
                ("no class token", getattr(trunk, "cls_token", None) is None),
                ("a position embedding that skips the class token", getattr(trunk, "no_embed_class", False)),
                ("dynamic image size", getattr(trunk, "dynamic_img_size", False)),
                ("gated attention", any(getattr(b.attn, "gate", None) is not None for b in trunk.blocks)),
            )
            if present
        ]
        if unsupported:
            msg = f"The timm image tower {type(trunk).__name__} has {', '.join(unsupported)}: not supported."
            raise NotImplementedError(msg)

    @property
    def trunk(self) -> nn.Module:
        """The timm model."""
        return self.visual.trunk

    @override
    @property
    def blocks(self) -> Sequence[nn.Module]:
        return self.trunk.blocks

    @override
    @property
    def width(self) -> int:
        return int(self.trunk.embed_dim)

    @override
    @property
    def patch_size(self) -> int:
        return int(self.trunk.patch_embed.patch_size[0])

    @override
    @property
    def embed_dim(self) -> int:
        linears = [m for m in (*self.trunk.head.modules(), *self.visual.head.modules()) if isinstance(m, nn.Linear)]
        return int(linears[-1].out_features) if linears else self.width

    @override
    @property
    def positional_embedding(self) -> torch.Tensor:
        return self.trunk.pos_embed.data[0]

    @override
    def set_grid(self, positional_embedding: torch.Tensor, grid: int) -> None:
        self.trunk.pos_embed = nn.Parameter(positional_embedding[None], requires_grad=False)
        self.trunk.patch_embed.set_input_size(img_size=grid * self.patch_size)
        self.visual.image_size = (grid * self.patch_size, grid * self.patch_size)

    @override
    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        trunk = self.trunk
        x = trunk.patch_embed(images.to(trunk.pos_embed.dtype))
        cls = trunk.cls_token.to(x.dtype).expand(x.shape[0], -1, -1)
        return trunk.pos_drop(torch.cat([cls, x], dim=1) + trunk.pos_embed.to(x.dtype))

    @override
    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.norm_pre(self.trunk.patch_drop(x))

    @override
    def value_value(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        attn = block.attn  # timm's q/k norms do not touch the values
        out = _heads_attention(attn.qkv(block.norm1(x)), attn.num_heads)
        return block.ls1(attn.proj(attn.norm(out)))

    @override
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.head(self.trunk.forward_head(self.trunk.norm(x)))

    @override
    def project(self, tokens: torch.Tensor, *, final_norm: bool = True) -> torch.Tensor:
        trunk = self.trunk
        x = trunk.norm(tokens) if final_norm else tokens
        return self.visual.head(trunk.head(trunk.fc_norm(x)))

    @override
    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.trunk.norm(tokens)

    @override
    def value_only_block(self, block: nn.Module, x: torch.Tensor, *, batch_mixing: bool) -> torch.Tensor:
        attn = block.attn  # timm's q/k norms do not touch the values
        v = attn.qkv(block.norm1(x)).chunk(3, dim=-1)[2]
        v = _mix_over_batch(v, attn.num_heads) if batch_mixing else v
        x = x + block.ls1(attn.proj(attn.norm(v)))
        return x + block.ls2(block.mlp(block.norm2(x)))


class TextTower:
    """What the layer-wise text loop needs from a text tower (subclasses implement it)."""

    def __init__(self, clip: nn.Module) -> None:
        self.clip = clip

    @property
    def blocks(self) -> Sequence[nn.Module]:
        """The transformer layers, in order."""
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Token width."""
        return int(self.word_embedding.weight.shape[1])

    @property
    def word_embedding(self) -> nn.Embedding:
        """The token-id to word-embedding table ``W_0``."""
        raise NotImplementedError

    def lengths(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per sequence, how many leading positions can change its features (the rest is cut)."""
        raise NotImplementedError

    def pooled_position(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per sequence, the position whose final state is pooled (EOT / ``[CLS]``)."""
        raise NotImplementedError

    def embed(self, words: torch.Tensor) -> torch.Tensor:
        """Hidden states entering layer 1 from word embeddings ``(N, L, D)`` (positions added)."""
        raise NotImplementedError

    def attention_mask(self, tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        """The mask every layer applies (causal for CLIP, padding for BERT)."""
        raise NotImplementedError

    def run_block(self, block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One layer."""
        raise NotImplementedError

    def pool(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled text state before the projection ``(N, D)`` from the last layer's states."""
        raise NotImplementedError

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map pooled states into the joint space."""
        raise NotImplementedError


class CausalText(TextTower):
    """CLIP's causal text transformer: positions up to each EOT (the argmax token id) matter; EOT is pooled."""

    @override
    @property
    def blocks(self) -> Sequence[nn.Module]:
        return self.clip.transformer.resblocks

    @override
    @property
    def word_embedding(self) -> nn.Embedding:
        return self.clip.token_embedding

    @override
    def lengths(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.argmax(dim=-1) + 1  # the causal mask hides later positions from the EOT token

    @override
    def pooled_position(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.argmax(dim=-1)

    @override
    def embed(self, words: torch.Tensor) -> torch.Tensor:
        return words + self.clip.positional_embedding[: words.shape[1]].to(words.dtype)

    @override
    def attention_mask(self, tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        length = tokens.shape[1]
        return self.clip.attn_mask[:length, :length].to(x.dtype) if self.clip.attn_mask is not None else None

    @override
    def run_block(self, block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return block(x, attn_mask=mask)

    @override
    def pool(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device)
        return self.clip.ln_final(x)[rows, self.pooled_position(tokens)]

    @override
    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        projection = self.clip.text_projection
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection


class BertText(TextTower):
    """open_clip's ``HFTextEncoder`` around a BERT: bidirectional, padding masked out, pooled by open_clip's pooler."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__(clip)
        from transformers.masking_utils import create_bidirectional_mask

        self._create_mask = create_bidirectional_mask
        if self.bert.config.is_decoder:
            msg = "The Hugging Face text tower is a decoder: only bidirectional BERT encoders are supported."
            raise NotImplementedError(msg)

    @property
    def text(self) -> HFTextEncoder:
        """open_clip's adapter (pooler, ``proj``)."""
        return self.clip.text

    @property
    def bert(self) -> nn.Module:
        """The Hugging Face ``BertModel``."""
        return self.clip.text.transformer

    @override
    @property
    def blocks(self) -> Sequence[nn.Module]:
        return self.bert.encoder.layer

    @override
    @property
    def word_embedding(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def _valid(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens != self.bert.config.pad_token_id).long()  # as HFTextEncoder.forward

    @override
    def lengths(self, tokens: torch.Tensor) -> torch.Tensor:
        valid = self._valid(tokens)  # right padding: the last non-pad position + 1
        positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
        return (valid * positions).amax(dim=-1)

    @override
    def pooled_position(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)

    @override
    def embed(self, words: torch.Tensor) -> torch.Tensor:
        return self.bert.embeddings(inputs_embeds=words)  # + token-type and position embeddings, LayerNorm

    @override
    def attention_mask(self, tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        return self._create_mask(config=self.bert.config, inputs_embeds=x, attention_mask=self._valid(tokens))

    @override
    def run_block(self, block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = block(x, mask)
        return out[0] if isinstance(out, tuple) else out

    @override
    def pool(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        pooler = self.text.pooler
        if isinstance(pooler, ClsPooler) and pooler.use_pooler_output and self.bert.pooler is not None:
            return self.bert.pooler(x)
        return pooler(BaseModelOutput(last_hidden_state=x), self._valid(tokens))

    @override
    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.text.proj(pooled)


def make_towers(clip: nn.Module, name: str) -> tuple[VisionTower, TextTower]:
    """The adapters of an open_clip model's towers, or a clear error naming what is not supported."""
    visual = clip.visual
    if isinstance(visual, VisionTransformer):
        vision: VisionTower = OpenCLIPVision(visual)
    elif isinstance(visual, TimmModel) and isinstance(visual.trunk, TimmVisionTransformer):
        vision = TimmVision(visual)
    else:
        kind = type(getattr(visual, "trunk", visual)).__name__
        msg = (
            f"Backbone '{name}' has a {kind} image tower; layer-wise features need a ViT: open_clip's "
            "VisionTransformer (ViT-B-16, ViT-L-14-336, hf-hub:ryanyip7777/pmc_vit_l_14, ...) or a timm "
            "VisionTransformer (hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224)."
        )
        raise NotImplementedError(msg)
    text_module = getattr(clip, "text", None)
    if getattr(clip, "transformer", None) is not None and getattr(clip, "text_pool_type", "") == "argmax":
        text: TextTower = CausalText(clip)
    elif isinstance(text_module, HFTextEncoder) and hasattr(text_module.transformer, "encoder"):
        text = BertText(clip)
    else:
        msg = (
            f"Backbone '{name}' has a {type(text_module or clip).__name__} text tower; supported are CLIP's causal "
            "text transformer (EOT pooling) and Hugging Face BERT encoders (BiomedCLIP's PubMedBERT)."
        )
        raise NotImplementedError(msg)
    return vision, text
