# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The one CLIP encoder wrapper shared by every model of the package.

:class:`CLIPBackbone` owns a frozen open_clip model and runs both towers layer by layer, so that models can:

- read intermediate patch tokens of chosen layers (1-indexed: layer ``l`` is the output of block ``l``);
- inject deep prompts: text tokens that replace the positions right after SOS before chosen text layers, and visual
  tokens appended after the patch tokens and replaced layer by layer (never replacing patch tokens);
- take an extra value-value attention path on chosen visual layers (AnomalyCLIP's DPAM);
- run at an input size other than the native one (positional embedding resized once, with a selectable kernel);
- encode text only up to the longest position that can change a feature (the end-of-text token under CLIP's causal
  mask, the last non-padding token for a bidirectional BERT whose padding is masked out), and cache the features of
  fixed prompts.

Two kinds of each tower are supported, through the adapters of :mod:`anomalib_medclip.backbones.towers`: open_clip's
ViT or a timm ViT (BiomedCLIP) for images, CLIP's causal text transformer or a Hugging Face BERT (BiomedCLIP's
PubMedBERT, prompts after ``[CLS]``, pooled at ``[CLS]``) for text. Models see the same API on both.

Without prompts the layer-wise forward reproduces ``encode_image`` / ``encode_text`` (tested). Everything is frozen
(``requires_grad=False``, eval mode) except what a model unfreezes with
:meth:`CLIPBackbone.unfreeze_last_visual_blocks`.

Example:
    >>> import torch
    >>> backbone = CLIPBackbone("ViT-B-16", pretrained=None, image_size=64)
    >>> out = backbone.encode_image(torch.rand(2, 3, 64, 64), out_layers=(6, 12))
    >>> out.pooled.shape, [t.shape for t in out.patch_tokens]
    (torch.Size([2, 512]), [torch.Size([2, 16, 768]), torch.Size([2, 16, 768])])
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from anomalib_medclip.backbones.loading import Activation, create_clip, create_tokenizer
from anomalib_medclip.backbones.towers import TextTower, VisionTower, make_towers

__all__ = [
    "BlockHook",
    "BlockOverride",
    "CLIPBackbone",
    "PosEmbedMode",
    "VisualFeatures",
    "resize_positional_embedding",
]

PosEmbedMode = Literal["bilinear", "bicubic", "bicubic-antialias"]
BlockHook = Callable[[torch.Tensor], torch.Tensor]
"""Maps the hidden states leaving a transformer block to those the next block sees (same shape)."""
BlockOverride = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""Runs a transformer block in place of its own forward: ``f(block, hidden_states) -> hidden_states``."""


@dataclass
class VisualFeatures:
    """Output of :meth:`CLIPBackbone.encode_image`.

    Attributes:
        pooled: image embedding in the joint space, ``(B, D)`` (``ln_post`` on CLS, then ``proj``; for a timm ViT,
            its final norm, pooling and head).
        patch_tokens: raw patch tokens of each requested layer, ``(B, P, Dv)`` (CLS and prompt tokens removed);
            from the value-value stream for layers on the V-V path.
        cls_tokens: raw CLS token of each requested layer, ``(B, Dv)``.
        final_cls: raw CLS token after the last block (original stream, before ``ln_post``), ``(B, Dv)``;
            AnomalyCLIP projects it without ``ln_post``.
    """

    pooled: torch.Tensor
    patch_tokens: list[torch.Tensor]
    cls_tokens: list[torch.Tensor]
    final_cls: torch.Tensor


def resize_positional_embedding(pos: torch.Tensor, grid: int, mode: PosEmbedMode) -> torch.Tensor:
    """Resize a ``(1 + g*g, D)`` ViT positional embedding to ``(1 + grid*grid, D)``, keeping the class position."""
    old = round((pos.shape[0] - 1) ** 0.5)
    if old == grid:
        return pos
    table = pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    if mode == "bilinear":
        table = F.interpolate(table, size=(grid, grid), mode="bilinear", align_corners=False)
    else:
        table = F.interpolate(
            table, size=(grid, grid), mode="bicubic", align_corners=False, antialias=mode != "bicubic"
        )
    table = table.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos.dtype)
    return torch.cat([pos[:1], table], dim=0)


def _state_fingerprint(module: nn.Module) -> str:
    """Short hash of a strided sample of every tensor: identifies frozen weights without hashing all of them."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        flat = value.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)].float().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


class CLIPBackbone(nn.Module):
    """Frozen open_clip model with layer-wise access to both towers.

    Args:
        name: open_clip architecture or ``"hf-hub:<org>/<repo>"``.
        pretrained: open_clip tag, local checkpoint file, or ``None`` for random weights (explicit, seeded).
        image_size: input size in pixels; ``None`` keeps the native size.
        activation: ``"auto"`` (what the weights were trained with), ``"gelu"`` or ``"quick_gelu"``.
        pos_embed_mode: kernel used to resize the positional embedding when ``image_size`` differs from native.
        seed: seed of the random initialisation when ``pretrained`` is ``None``.
    """

    def __init__(
        self,
        name: str = "ViT-B-16",
        pretrained: str | Path | None = "openai",
        *,
        image_size: int | None = None,
        activation: Activation = "auto",
        pos_embed_mode: PosEmbedMode = "bicubic-antialias",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.clip, self.info = create_clip(name, pretrained, activation=activation, seed=seed)
        self.clip.requires_grad_(False)
        self.image_tower: VisionTower
        self.text_tower: TextTower
        self.image_tower, self.text_tower = make_towers(self.clip, name)
        self.patch_size = self.image_tower.patch_size
        self.image_size = int(image_size or self.info.native_image_size)
        if self.image_size % self.patch_size:
            msg = f"image_size={self.image_size} must be a multiple of the patch size {self.patch_size} of '{name}'."
            raise ValueError(msg)
        self.grid_size = self.image_size // self.patch_size
        self.pos_embed_mode = pos_embed_mode
        pos = self.image_tower.positional_embedding
        self.image_tower.set_grid(resize_positional_embedding(pos, self.grid_size, pos_embed_mode), self.grid_size)
        self.seed = seed
        self.fingerprint = _state_fingerprint(self.clip)
        self._text_cache: dict[tuple, torch.Tensor] = {}
        self._tokenizer: Callable[[list[str]], torch.Tensor] | None = None
        self.clip.eval()

    # ------------------------------------------------------------------ properties
    @property
    def visual_depth(self) -> int:
        """Number of visual transformer blocks."""
        return len(self.image_tower.blocks)

    @property
    def text_depth(self) -> int:
        """Number of text transformer blocks."""
        return len(self.text_tower.blocks)

    @property
    def visual_width(self) -> int:
        """Token width of the image tower."""
        return self.image_tower.width

    @property
    def text_width(self) -> int:
        """Token width of the text tower."""
        return self.text_tower.width

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint embedding space."""
        return self.image_tower.embed_dim

    @property
    def num_patches(self) -> int:
        """Patch tokens per image at the current input size."""
        return self.grid_size**2

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned inverse temperature ``exp(logit_scale)`` (a scalar tensor)."""
        return self.clip.logit_scale.exp()

    def identity(self) -> dict[str, object]:
        """What rebuilds these frozen weights, plus a fingerprint to verify them."""
        return {
            "name": self.info.name,
            "pretrained": self.info.pretrained,
            "quick_gelu": self.info.quick_gelu,
            "image_size": self.image_size,
            "pos_embed_mode": self.pos_embed_mode,
            "seed": self.seed if self.info.pretrained is None else None,
            "fingerprint": self.fingerprint,
        }

    def train(self, mode: bool = True) -> CLIPBackbone:
        """Keep the frozen CLIP in eval mode whatever the enclosing module does (it has no dropout to train)."""
        super().train(mode)
        self.clip.eval()
        return self

    def unfreeze_last_visual_blocks(self, n: int) -> list[nn.Parameter]:
        """Make the last ``n`` visual blocks trainable and return their parameters."""
        if not 0 <= n <= self.visual_depth:
            msg = f"Cannot unfreeze {n} visual blocks: the image tower has {self.visual_depth}."
            raise ValueError(msg)
        params: list[nn.Parameter] = []
        for block in list(self.image_tower.blocks)[self.visual_depth - n :]:
            block.requires_grad_(True)
            params.extend(block.parameters())
        return params

    # ------------------------------------------------------------------ text tower
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise with the backbone's tokenizer (CLIP BPE or BERT WordPiece), on the backbone's device.

        CLIP: ``SOS ... EOT`` then zeros, 77 positions. BERT: ``[CLS] ... [SEP]`` then ``[PAD]``, lower-cased, the
        tower's context (256 for BiomedCLIP). Either way position 0 is the start token and prompts go right after it.
        """
        if self._tokenizer is None:
            self._tokenizer = create_tokenizer(self.info)
        return self._tokenizer(list(texts)).to(self.clip.logit_scale.device)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Word embeddings ``W_0`` of token ids, ``(N, L, Dt)``, without positional embedding."""
        return self.text_tower.word_embedding(tokens)

    def encode_text(
        self,
        tokens: torch.Tensor,
        *,
        embeddings: torch.Tensor | None = None,
        deep_prompts: Mapping[int, torch.Tensor] | None = None,
        additive: bool = False,
        normalize: bool = False,
        block_hooks: Mapping[int, BlockHook] | None = None,
        project: bool = True,
    ) -> torch.Tensor:
        """Encode token ids, optionally with replaced word embeddings, deep prompts and per-layer adapters.

        Args:
            tokens: token ids ``(N, L)`` from :meth:`tokenize`; CLIP pools the end-of-text (argmax) position, BERT
                pools ``[CLS]`` and masks padding out.
            embeddings: word embeddings ``(N, L, Dt)`` to use instead of ``token_embeddings(tokens)`` (learnable
                contexts); positions that cannot change a feature (past the longest EOT for CLIP, padding for BERT)
                are ignored.
            deep_prompts: ``{layer: (N | 1, m, Dt)}`` tokens for positions ``1..m`` (right after SOS / ``[CLS]``) of
                the hidden states entering text layer ``layer`` (1-indexed, ``>= 2``; layer 1's input is
                ``embeddings``).
            additive: add the deep prompts to those hidden states instead of replacing them.
            normalize: L2-normalise the output.
            block_hooks: ``{layer: f}`` with ``f((N, L, Dt)) -> (N, L, Dt)`` applied to the hidden states leaving
                text layer ``layer`` (1-indexed), before later layers see them (residual adapters). ``f`` must act per
                position: the sequence is cut after the longest EOT (CLIP) or the longest non-padding token (BERT).
            project: apply the text projection; ``False`` returns the pooled state ``(N, Dt)`` before it (CLIP: the
                ``ln_final`` EOT state; BERT: the pooler's ``[CLS]`` state), for methods with their own projection.

        Returns:
            Text features ``(N, D)`` (``(N, Dt)`` with ``project=False``).
        """
        return self.encode_text_with_states(
            tokens,
            embeddings=embeddings,
            deep_prompts=deep_prompts,
            additive=additive,
            normalize=normalize,
            block_hooks=block_hooks,
            project=project,
        )[0]

    def encode_text_with_states(
        self,
        tokens: torch.Tensor,
        *,
        embeddings: torch.Tensor | None = None,
        deep_prompts: Mapping[int, torch.Tensor] | None = None,
        additive: bool = False,
        normalize: bool = False,
        block_hooks: Mapping[int, BlockHook] | None = None,
        project: bool = True,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """As :meth:`encode_text`, also returning the pooled-position hidden state after each layer.

        Returns:
            Text features ``(N, D)`` and ``depth + 1`` states ``(N, Dt)`` at the pooled position (CLIP: EOT; BERT:
            ``[CLS]``): the input of layer 1, then the output of each layer.
        """
        tower = self.text_tower
        blocks = tower.blocks
        bad = [layer for layer in (block_hooks or ()) if not 1 <= layer <= len(blocks)]
        if bad:
            msg = f"Text layers {bad} are out of range 1..{len(blocks)} for '{self.info.name}'."
            raise ValueError(msg)
        if not (torch.compiler.is_exporting() or torch.jit.is_tracing()):  # a data-dependent shape graphs refuse
            tokens = tokens[:, : int(tower.lengths(tokens).max())]  # exact: later positions cannot change a feature
        rows, pooled_at = torch.arange(tokens.shape[0], device=tokens.device), tower.pooled_position(tokens)
        words = self.token_embeddings(tokens) if embeddings is None else embeddings[:, : tokens.shape[1]]
        x = tower.embed(words)
        mask = tower.attention_mask(tokens, x)
        states = [x[rows, pooled_at]]
        for layer, block in enumerate(blocks, start=1):
            if deep_prompts and layer in deep_prompts and layer > 1:
                prompt = deep_prompts[layer].to(x.dtype).expand(x.shape[0], -1, -1)
                slots = x[:, 1 : 1 + prompt.shape[1]] + prompt if additive else prompt
                x = torch.cat([x[:, :1], slots, x[:, 1 + prompt.shape[1] :]], dim=1)
            x = tower.run_block(block, x, mask)
            if block_hooks and layer in block_hooks:
                x = block_hooks[layer](x)
            states.append(x[rows, pooled_at])
        x = tower.pool(x, tokens)
        if project:
            x = tower.project(x)
        return (F.normalize(x, dim=-1) if normalize else x), states

    @torch.no_grad()
    def encode_fixed_text(self, texts: Sequence[str], *, normalize: bool = True) -> torch.Tensor:
        """Features of fixed prompts ``(N, D)``, cached per text list, device and dtype (the tower is frozen).

        Sentences are encoded in groups of equal token length, each cut after its last position that can change its
        features (exact, see :meth:`encode_text`): several times fewer token positions than full-context sequences
        for prompt ensembles.
        """
        device = self.clip.logit_scale.device
        key = (tuple(texts), normalize, str(device), self.clip.logit_scale.dtype)
        if key not in self._text_cache:
            with torch.inference_mode(False), torch.no_grad():  # cached tensors outlive the stage: no inference tensors
                self._text_cache[key] = self._encode_by_length(texts, normalize)
        return self._text_cache[key]

    def _encode_by_length(self, texts: Sequence[str], normalize: bool) -> torch.Tensor:
        """Features ``(N, D)`` of ``texts``, encoded in groups of equal token length."""
        tokens = self.tokenize(texts)
        lengths = self.text_tower.lengths(tokens)
        scale = self.clip.logit_scale
        features = torch.empty(len(tokens), self.embed_dim, device=scale.device, dtype=scale.dtype)
        for length in lengths.unique():
            rows = (lengths == length).nonzero().flatten()
            features[rows] = self.encode_text(tokens[rows], normalize=normalize).to(features.dtype)
        return features

    def clear_text_cache(self) -> None:
        """Forget the cached fixed-text features (e.g. to time the text encoding)."""
        self._text_cache.clear()

    # ------------------------------------------------------------------ image tower
    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """``E_0``: CLS + patch embeddings with positional embedding, before ``ln_pre``, ``(B, 1 + P, Dv)``."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            msg = f"Expected images of {self.image_size}x{self.image_size} px, got {tuple(images.shape[-2:])}."
            raise ValueError(msg)
        return self.image_tower.embed_patches(images)

    def _embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """The hidden states entering block 1 (after patch dropout and the pre-norm)."""
        return self.image_tower.pre(self.embed_patches(images))

    def encode_image(
        self,
        images: torch.Tensor,
        *,
        out_layers: Sequence[int] = (),
        visual_prompts: Mapping[int, torch.Tensor] | None = None,
        vv_layers: Sequence[int] = (),
        block_hooks: Mapping[int, BlockHook] | None = None,
        block_overrides: Mapping[int, BlockOverride] | None = None,
    ) -> VisualFeatures:
        """Run the image tower block by block.

        Args:
            images: normalised images ``(B, 3, S, S)`` with ``S = image_size``.
            out_layers: 1-indexed layers whose tokens are returned.
            visual_prompts: ``{layer: (B | 1, n, Dv)}`` tokens that replace the prompt tokens (appended after the
                patch tokens) of the hidden states entering ``layer``; layers without an entry carry the previous
                prompt outputs on.
            vv_layers: layers that also feed a value-value stream (AnomalyCLIP's DPAM): it starts from the input of
                the first of them and accumulates their V-V attention outputs (no MLP); returned patch tokens of
                layers from the first V-V layer on come from that stream.
            block_hooks: ``{layer: f}`` with ``f((B, L, Dv)) -> (B, L, Dv)`` applied to the hidden states leaving
                layer ``layer`` (1-indexed) before they are returned or passed on (residual adapters: MVFA, AA-CLIP).
            block_overrides: ``{layer: f}``: ``f(block, x)`` runs instead of ``block(x)`` (blocks with a modified
                attention in the main stream, e.g. AA-CLIP's value-only teacher); its block hook still follows.

        Returns:
            :class:`VisualFeatures`.
        """
        tower = self.image_tower
        layers = (*out_layers, *vv_layers, *(block_hooks or ()), *(block_overrides or ()))
        bad = [layer for layer in layers if not 1 <= layer <= self.visual_depth]
        if bad:
            msg = f"Layers {bad} are out of range 1..{self.visual_depth} for '{self.info.name}'."
            raise ValueError(msg)
        x = self._embed_image(images)
        n_base = x.shape[1]
        vv_start, vv = (min(vv_layers), None) if vv_layers else (None, None)
        patches, classes = [], []
        for layer, block in enumerate(tower.blocks, start=1):
            if visual_prompts and layer in visual_prompts:
                prompt = visual_prompts[layer].to(x.dtype).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :n_base], prompt], dim=1)
                if vv is not None:
                    vv = torch.cat([vv[:, :n_base], x[:, n_base:]], dim=1)
            if layer == vv_start:
                vv = x
            if vv is not None and layer in vv_layers:
                vv = vv + tower.value_value(block, x)
            x = block_overrides[layer](block, x) if block_overrides and layer in block_overrides else block(x)
            if block_hooks and layer in block_hooks:
                x = block_hooks[layer](x)
            if layer in out_layers:
                source = vv if vv is not None else x
                patches.append(source[:, 1:n_base])
                classes.append(source[:, 0])
        return VisualFeatures(tower.pool(x[:, :n_base]), patches, classes, x[:, 0])

    def post_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tower's final norm of raw visual tokens ``(..., Dv)``, without the projection.

        ``ln_post`` on open_clip ViTs, the trunk's ``norm`` on timm ViTs; for methods with their own projections.
        """
        return self.image_tower.final_norm(tokens)

    def project_tokens(self, tokens: torch.Tensor, *, final_norm: bool = True) -> torch.Tensor:
        """Map raw visual tokens ``(..., Dv)`` into the joint space: ``(..., D)``.

        open_clip ViT: ``ln_post`` then ``proj``. timm ViT (BiomedCLIP): the trunk's final norm, then what its head
        and open_clip's ``head`` apply to the pooled token. ``final_norm=False`` skips ``ln_post`` / the final norm
        (AnomalyCLIP projects the raw final CLS token).
        """
        return self.image_tower.project(tokens, final_norm=final_norm)

    def value_only_block(self, block: nn.Module, x: torch.Tensor, *, batch_mixing: bool = False) -> torch.Tensor:
        """``block(x)`` with its attention replaced by its projected values (CLIP Surgery's value path).

        For ``block_overrides``. ``batch_mixing``: each position attends over the same position of the batch's images
        (value-value attention across the batch, AA-CLIP's teacher as its original computes it).
        """
        return self.image_tower.value_only_block(block, x, batch_mixing=batch_mixing)
