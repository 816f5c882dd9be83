# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Bi-directional cross-modal prompt learning on a frozen CLIP (SpLIP-style blocks adapted to anomaly detection).

Prompts are ``"a photo of a [normal | anomalous] [obj]"``. With ``E_0`` the patch embeddings and ``W_0`` the word
embeddings:

- **B_t** (visual -> text): mean-pooled ``E_0`` -> MLP -> a residual ``R`` (m tokens) added to the embeddings of the m
  context words after SOS (``"a photo of a"``); the last layer is zero-initialised, so training starts at plain CLIP.
  ``R`` is re-injected (added) into those positions before every text layer up to ``prompt_depth``.
- **B_v** (text -> visual): token-wise ``Linear(d_t, d_v)`` of the template tokens ``W'`` = [SOS, context words]
  -> ``V^tg`` (m + 1 tokens), fed to every prompted visual layer.
- **B_vt** (conjunction): per visual layer, ``Linear(d_t, d_v)`` of the end-of-text states of the normal and
  anomalous prompts at the corresponding text layer -> ``V^ms`` (n = 2 tokens).
- Visual prompts ``[V^tg, V^ms]`` are appended after the patch tokens and replaced at each layer.

Image score: softmax over the cosine similarities of the image embedding with the image's own normal/anomalous text
features at CLIP's temperature. Pixel map: patch tokens of chosen layers through ``ln_post``/``proj``, scored against
the same text features, averaged over layers, upsampled and smoothed. Design choices: ``README.md`` beside this file.

Paper (blocks): "SpLIP: Multi-modal Prompt Learning ...", https://arxiv.org/abs/2407.04207
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components import GaussianSmoothing, PromptedModel, layer_maps_to_image
from anomalib_medclip.prompts.cross_modal import TEMPLATE, cross_modal_sentences

__all__ = ["MedCrossModalCLIPModel", "text_layer_for"]


def text_layer_for(visual_layer: int, visual_depth: int, text_depth: int) -> int:
    """Text layer whose output feeds the prompts entering ``visual_layer`` (0 = the text embeddings).

    The prompts entering visual layer ``l`` come from text layer ``l - 1`` when the towers have equal depth; with a
    deeper image tower (ViT-L: 24 visual, 12 text) each text layer feeds ``visual_depth / text_depth`` visual layers.
    """
    return (visual_layer - 1) * text_depth // visual_depth


class MedCrossModalCLIPModel(PromptedModel):
    """Torch model of ``MedCrossModalCLIP``.

    Args:
        backbone: the shared CLIP wrapper (frozen).
        n_ctx: m, context tokens after SOS that B_t conditions (the template has 4: "a photo of a").
        use_bt, use_bv, use_bvt: switch each block on/off (ablations).
        prompt_depth: number of text and visual layers that receive prompts (``None`` = all).
        map_layers: 1-indexed visual layers for the pixel map.
        smoothing_sigma: Gaussian sigma of the map in pixels (0 disables it).
    """

    def __init__(
        self,
        backbone: CLIPBackbone,
        n_ctx: int = 4,
        use_bt: bool = True,
        use_bv: bool = True,
        use_bvt: bool = True,
        prompt_depth: int | None = None,
        map_layers: Sequence[int] = (),
        smoothing_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        if not 1 <= n_ctx <= 4:
            msg = f"n_ctx={n_ctx}: the template '{TEMPLATE}' has 4 context words after SOS; use 1..4."
            raise ValueError(msg)
        self.backbone = backbone
        self.n_ctx = n_ctx
        self.map_layers = tuple(map_layers)
        self.prompt_depth = prompt_depth or backbone.visual_depth
        d_t, d_v = backbone.text_width, backbone.visual_width
        self.b_t = (
            nn.Sequential(nn.Linear(d_v, d_v // 16), nn.ReLU(), nn.Linear(d_v // 16, n_ctx * d_t)) if use_bt else None
        )
        if self.b_t is not None:
            nn.init.zeros_(self.b_t[-1].weight)
            nn.init.zeros_(self.b_t[-1].bias)
        self.b_v = nn.Linear(d_t, d_v) if use_bv else None
        visual_layers = range(1, min(self.prompt_depth, backbone.visual_depth) + 1)
        self.b_vt = nn.ModuleList(nn.Linear(d_t, d_v) for _ in visual_layers) if use_bvt else None
        self.smoothing = GaussianSmoothing(smoothing_sigma)
        self.register_buffer("tokens", torch.empty(0, dtype=torch.long), persistent=False)

    def _prepare_text(self, object_name: str) -> None:
        """Tokenise the two prompts of ``object_name``."""
        self.tokens = self.backbone.tokenize(cross_modal_sentences(object_name))

    def _tokens(self) -> torch.Tensor:
        self._require_text()
        return self.tokens

    def encode_text(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-image normal/anomalous text features ``(B, 2, D)`` and EOT states per text layer ``[(B, 2, Dt)]``."""
        tokens = self._tokens()
        batch = images.shape[0]
        embeddings = self.backbone.token_embeddings(tokens).unsqueeze(0).expand(batch, -1, -1, -1)
        deep = None
        if self.b_t is not None:
            pooled = self.backbone.embed_patches(images)[:, 1:].mean(dim=1)
            residual = self.b_t(pooled).reshape(batch, 1, self.n_ctx, -1)
            ctx = embeddings[:, :, 1 : 1 + self.n_ctx] + residual
            embeddings = torch.cat([embeddings[:, :, :1], ctx, embeddings[:, :, 1 + self.n_ctx :]], dim=2)
            flat = residual.expand(-1, 2, -1, -1).reshape(batch * 2, self.n_ctx, -1)
            deep = dict.fromkeys(range(2, min(self.prompt_depth, self.backbone.text_depth) + 1), flat)
        features, states = self.backbone.encode_text_with_states(
            tokens.repeat(batch, 1), embeddings=embeddings.reshape(batch * 2, *tokens.shape[1:], -1),
            deep_prompts=deep, additive=True, normalize=True,
        )  # fmt: skip
        return features.reshape(batch, 2, -1), [s.reshape(batch, 2, -1) for s in states]

    def visual_prompts(self, batch: int, text_states: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        """``{visual layer: (B, J - 1 + n, Dv)}`` prompts from B_v and B_vt (empty when both are off)."""
        parts_by_layer: dict[int, list[torch.Tensor]] = {}
        if self.b_v is not None:
            template = self.backbone.token_embeddings(self._tokens()[:1, : 1 + self.n_ctx])  # W' = SOS + context
            v_tg = self.b_v(template).expand(batch, -1, -1)
        for layer in range(1, min(self.prompt_depth, self.backbone.visual_depth) + 1):
            parts = [v_tg] if self.b_v is not None else []
            if self.b_vt is not None:
                state = text_states[text_layer_for(layer, self.backbone.visual_depth, self.backbone.text_depth)]
                parts.append(self.b_vt[layer - 1](state))
            if parts:
                parts_by_layer[layer] = parts
        return {layer: torch.cat(parts, dim=1) for layer, parts in parts_by_layer.items()}

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image logits ``(B, 2)`` and per-pixel class probabilities averaged over layers ``(B, 2, S, S)``."""
        text, states = self.encode_text(images)
        visual = self.backbone.encode_image(
            images, out_layers=self.map_layers, visual_prompts=self.visual_prompts(images.shape[0], states)
        )
        scale = self.backbone.logit_scale
        logits = scale * torch.einsum("bd,bcd->bc", F.normalize(visual.pooled, dim=-1), text)
        if not visual.patch_tokens:
            return logits, None
        probs = []
        for tokens in visual.patch_tokens:
            patches = F.normalize(self.backbone.project_tokens(tokens), dim=-1)
            probs.append((scale * torch.einsum("bpd,bcd->bpc", patches, text)).softmax(dim=-1))
        size = images.shape[-1]
        maps = torch.cat([layer_maps_to_image([p[..., c] for p in probs], size) for c in range(2)], dim=1)
        return logits, maps

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores ``(B,)`` and anomaly maps ``(B, 1, S, S)``."""
        logits, maps = self.forward_train(images)
        with torch.autocast(images.device.type, enabled=False):  # under mixed precision, scores and maps in float32
            pred_score = logits.float().softmax(dim=-1)[:, 1]
            if maps is None:
                return InferenceBatch(pred_score=pred_score)
            return InferenceBatch(pred_score=pred_score, anomaly_map=self.smoothing(maps[:, 1:].float()))
