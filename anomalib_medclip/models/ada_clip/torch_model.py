# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP: hybrid static + dynamic prompts in both CLIP towers, per-layer projections and hybrid semantic fusion.

With ``g`` the plain CLIP image embedding of an image (one extra frozen pass):

- **Dynamic prompts**: ``length`` linear maps of ``g`` into each tower's width; the same dynamic tokens are added to
  the static (learned) tokens of every prompted layer.
- **Vision**: ``length`` prompt tokens are appended after the patch tokens before block 1 and replaced before blocks
  2..depth; from then on they stay in the sequence. Patch tokens of the tapped layers exclude them.
- **Text**: 7 normal and 5 abnormal state phrases of the object x 4 templates (48 sentences); the hidden states of the
  first ``length`` positions after SOS are overwritten before text blocks 2..depth. Per state group: L2-normalised
  sentence features, mean, L2 norm: ``T`` ``(D, 2)``, **per image** (the prompts depend on it).
- Prompt tokens are rounded to fp16 before use, as the original (``fp16_prompt_rounding``).
- Patch tokens of each tapped layer go through a trainable ``Linear(Dv, D)`` and are L2-normalised; the pooled image
  embedding of the prompted pass through a trainable ``Linear(D, D)``. Logits ``100 * p @ T``.
- **Image score**: ``softmax(100 * norm(0.2 HSF + 0.8 cls) @ T)[abnormal]`` (:mod:`.hsf`), or the ``cls`` term alone.
- **Map**: layer logits upsampled bilinearly (``align_corners=True``), averaged over layers, soft-maxed; abnormal
  probability; Gaussian sigma 4. Training uses the per-layer soft-maxed maps.

Everything is batched: text prompts are built per image and the 48 x B sentences encoded in one pass, truncated at
the longest end-of-text token (exact under CLIP's causal mask). The original only runs with batch size 1.

Paper: "AdaCLIP: Adapting CLIP with Hybrid Learnable Prompts for Zero-Shot Anomaly Detection",
https://arxiv.org/abs/2407.15795
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.ada_clip.hsf import hybrid_semantic_fusion
from anomalib_medclip.models.components import GaussianSmoothing, PromptedModel, upsample_patch_values
from anomalib_medclip.models.components.official import check_state, read_official_state, save_official_state
from anomalib_medclip.prompts import state_sentences

__all__ = ["LOGIT_SCALE", "OFFICIAL_PREFIX", "AdaCLIPModel"]

LOGIT_SCALE = 100.0  # fixed in the original
OFFICIAL_PREFIX = "clip_model."
HSF_ALPHA = 0.2  # hard-coded in the original


class _Prompts(nn.Module):
    """Static prompt tokens of one tower, one ``(length, width)`` tensor per prompted layer (the original's names)."""

    def __init__(self, depth: int, length: int, width: int, enabled: bool) -> None:
        super().__init__()
        tokens = (nn.Parameter(torch.empty(length, width).normal_(std=0.02)) for _ in range(depth if enabled else 0))
        self.static_prompts = nn.ParameterList(tokens)


class _Heads(nn.Module):
    """``n`` linear maps (the original's ``ProjectLayer.head``)."""

    def __init__(self, n: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.head = nn.ModuleList(nn.Linear(d_in, d_out) for _ in range(n))


class AdaCLIPModel(PromptedModel):
    """Torch model of ``AdaCLIP``.

    Args:
        backbone: the shared CLIP wrapper (frozen).
        layers: 1-indexed tapped visual layers, one projection each.
        prompt_length, prompt_depth: prompt tokens per layer (5) and prompted layers (4).
        prompting_branch: towers with prompts, ``"VL"`` (both), ``"V"``, ``"L"`` or ``""``.
        prompting_type: ``"SD"`` (static + dynamic), ``"S"`` or ``"D"``.
        use_hsf: fuse the image embedding with the HSF feature for the image score.
        k_clusters: clusters of HSF (20).
        hsf_seed: seed of HSF's k-means++ seeding.
        smoothing_sigma: Gaussian sigma of the map (4).
        fp16_prompt_rounding: round prompt tokens to fp16 like the original.
    """

    def __init__(
        self,
        backbone: CLIPBackbone,
        layers: Sequence[int],
        prompt_length: int = 5,
        prompt_depth: int = 4,
        prompting_branch: Literal["VL", "V", "L", ""] = "VL",
        prompting_type: Literal["SD", "S", "D"] = "SD",
        use_hsf: bool = True,
        k_clusters: int = 20,
        hsf_seed: int = 0,
        smoothing_sigma: float = 4.0,
        fp16_prompt_rounding: bool = True,
    ) -> None:
        super().__init__()
        if prompting_type not in {"SD", "S", "D"} or prompting_branch not in {"VL", "V", "L", ""}:
            msg = "prompting_type must be 'SD', 'S' or 'D' and prompting_branch 'VL', 'V', 'L' or '', got "
            msg += f"{prompting_type!r} and {prompting_branch!r}."
            raise ValueError(msg)
        if not 1 <= prompt_depth <= min(backbone.visual_depth, backbone.text_depth) or prompt_length < 1:
            msg = f"prompt_depth={prompt_depth} must be in 1..{min(backbone.visual_depth, backbone.text_depth)} "
            msg += f"and prompt_length={prompt_length} >= 1."
            raise ValueError(msg)
        self.backbone = backbone
        self.layers = tuple(layers)
        self.length, self.depth = prompt_length, prompt_depth
        self.visual_prompting, self.text_prompting = "V" in prompting_branch, "L" in prompting_branch
        self.static, self.dynamic = "S" in prompting_type, "D" in prompting_type
        self.use_hsf, self.k_clusters, self.hsf_seed = use_hsf, k_clusters, hsf_seed
        self.fp16_prompt_rounding = fp16_prompt_rounding
        dim, d_visual, d_text = backbone.embed_dim, backbone.visual_width, backbone.text_width
        self.text_prompter = _Prompts(prompt_depth, prompt_length, d_text, self.text_prompting and self.static)
        self.visual_prompter = _Prompts(prompt_depth, prompt_length, d_visual, self.visual_prompting and self.static)
        self.patch_token_layer = _Heads(len(self.layers), d_visual, dim)
        self.cls_token_layer = _Heads(1, dim, dim)
        if self.dynamic:
            self.dynamic_visual_prompt_generator = _Heads(prompt_length, dim, d_visual)
            self.dynamic_text_prompt_generator = _Heads(prompt_length, dim, d_text)
        self.smoothing = GaussianSmoothing(smoothing_sigma)
        self.register_buffer("tokens", torch.empty(0, dtype=torch.long), persistent=False)
        self.sentences: list[str] = []
        self.n_normal = 0

    def _prepare_text(self, object_name: str) -> None:
        """Tokenise the 48 sentences of ``object_name`` (their features depend on the image and are not cached)."""
        normal, abnormal = state_sentences(object_name)
        self.sentences = [*normal, *abnormal]
        self.tokens = self.backbone.tokenize(self.sentences)
        self.n_normal = len(normal)

    # ------------------------------------------------------------------ prompts
    def _round(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.half().to(tokens.dtype) if self.fp16_prompt_rounding else tokens

    def _context(self, prompter: _Prompts, index: int, dynamic: torch.Tensor | None) -> torch.Tensor:
        """Prompt tokens ``(B | 1, length, width)`` of layer ``index + 1``: static + dynamic, as configured."""
        parts = [prompter.static_prompts[index][None]] if self.static else []
        parts += [dynamic] if dynamic is not None else []
        return self._round(sum(parts[1:], parts[0]))

    def _dynamic_prompts(self, images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Image-conditioned tokens ``(B, length, Dv)`` and ``(B, length, Dt)`` from the plain image embedding."""
        if not self.dynamic:
            return None, None
        with torch.no_grad():
            pooled = self.backbone.encode_image(images).pooled
        visual = torch.stack([head(pooled) for head in self.dynamic_visual_prompt_generator.head], dim=1)
        text = torch.stack([head(pooled) for head in self.dynamic_text_prompt_generator.head], dim=1)
        return visual, text

    def text_features(self, dynamic: torch.Tensor | None) -> torch.Tensor:
        """Normal/abnormal text features ``(B | 1, D, 2)``: per image when the text prompts depend on it."""
        self._require_text()
        if not self.text_prompting:  # plain CLIP text: the backbone caches it
            features = self.backbone.encode_fixed_text(self.sentences, normalize=True)[None]
        else:  # layer 1 keeps its word embeddings; layers 2..depth get the prompts, per image when dynamic
            per_image = dynamic is not None
            rows = dynamic.shape[0] if per_image else 1
            deep = {}
            for index in range(1, self.depth):
                context = self._context(self.text_prompter, index, dynamic)
                deep[index + 1] = context.repeat_interleave(len(self.tokens), dim=0) if per_image else context
            features = self.backbone.encode_text(self.tokens.repeat(rows, 1), deep_prompts=deep, normalize=True)
            features = features.reshape(rows, len(self.tokens), -1)
        groups = (features[:, : self.n_normal], features[:, self.n_normal :])
        return torch.stack([F.normalize(group.mean(dim=1), dim=-1) for group in groups], dim=-1)

    # ------------------------------------------------------------------ forward
    def _logits(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image class probabilities ``(B, 2)`` and per-layer patch logits ``[(B, P, 2)]``."""
        dynamic_visual, dynamic_text = self._dynamic_prompts(images)
        prompts = None
        if self.visual_prompting:
            prompts = {i + 1: self._context(self.visual_prompter, i, dynamic_visual) for i in range(self.depth)}
        features = self.backbone.encode_image(images, out_layers=self.layers, visual_prompts=prompts)
        text = self.text_features(dynamic_text).to(features.pooled.dtype)  # (B | 1, D, 2)
        image = F.normalize(self.cls_token_layer.head[0](features.pooled), dim=-1)
        heads = self.patch_token_layer.head
        patches = [F.normalize(head(t), dim=-1) for head, t in zip(heads, features.patch_tokens, strict=True)]
        logits = [LOGIT_SCALE * p @ text for p in patches]
        if self.use_hsf:
            fused = hybrid_semantic_fusion(patches, logits, self.k_clusters, seed=self.hsf_seed)
            image = F.normalize(HSF_ALPHA * fused + (1 - HSF_ALPHA) * image, dim=-1)
        probs = (LOGIT_SCALE * image[:, None] @ text).squeeze(1).softmax(dim=-1)
        return probs, logits

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image class probabilities ``(B, 2)`` and per-layer soft-maxed maps ``[(B, 2, S, S)]``."""
        probs, logits = self._logits(images)
        size = images.shape[-1]
        return probs, [upsample_patch_values(lg, size, align_corners=True).softmax(dim=1) for lg in logits]

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores ``(B,)`` and anomaly maps ``(B, 1, S, S)``."""
        probs, logits = self._logits(images)
        with torch.autocast(images.device.type, enabled=False):
            mean_logits = torch.stack([lg.float() for lg in logits]).mean(dim=0)  # upsampling is linear
            maps = upsample_patch_values(mean_logits, images.shape[-1], align_corners=True).softmax(dim=1)
            return InferenceBatch(pred_score=probs[:, 1].float(), anomaly_map=self.smoothing(maps[:, 1:]))

    # ------------------------------------------------------------------ official checkpoints
    def _learnable(self) -> dict[str, torch.Tensor]:
        return {name: p for name, p in self.named_parameters() if not name.startswith("backbone.")}

    def load_official_checkpoint(self, path: str | Path) -> None:
        """Load the original's flat ``clip_model.*`` file strictly (the original's own load is ``strict=False``)."""
        state = read_official_state(path, method="AdaCLIP")
        expected = {OFFICIAL_PREFIX + name: p for name, p in self._learnable().items()}
        check_state(expected, state, path=path, method="AdaCLIP")
        # every learnable key is in the file (checked above); the frozen backbone keys are not meant to be
        self.load_state_dict({name.removeprefix(OFFICIAL_PREFIX): value for name, value in state.items()}, strict=False)

    def save_official_checkpoint(self, path: str | Path) -> Path:
        """Write the learnable tensors in the original's flat ``clip_model.*`` format."""
        return save_official_state({OFFICIAL_PREFIX + k: v for k, v in self._learnable().items()}, path)
