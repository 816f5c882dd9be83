# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP: object-agnostic prompt learning with a value-value attention path on a frozen CLIP.

- Text: two learned prompts, ``"[X]*12 object."`` and ``"[X]*12 damaged object."``, whose 12 context embeddings are
  separate parameters for the normal and the abnormal prompt; learned deep text tokens (length 4) replace the hidden
  states of the first 4 context positions entering text layers 2..9 ("depth 9"). The original rounds those deep
  tokens to fp16 before use (kept here: ``fp16_prompt_rounding``). Text features ``T`` ``(2, D)``, L2-normalised.
- Image: the image tower runs unchanged; from the first quarter of the tower on (layer 6 of 24, the original's
  ``DPAM_layer=20``) a value-value stream accumulates each block's V-V attention output without MLP (DPAM). Patch
  tokens of the map layers come from that stream and are projected with ``ln_post`` and ``proj``.
- Image score: ``softmax(norm(CLS_L @ proj) @ T^T / 0.07)[abnormal]``, the CLS of the original stream taken without
  ``ln_post`` (as the original).
- Map: per layer ``softmax(norm(patch) @ T^T / 0.07)``, upsampled bilinearly (``align_corners=False``) as
  probabilities, abnormal channel, summed over layers, Gaussian sigma 4.
- Layers: only the last one by default; the released checkpoints were trained with four aliased copies of the
  layer-24 map (the original's cloning bug), which the training loss weight ``4`` reproduces.

Paper: "AnomalyCLIP: Object-agnostic Prompt Learning for Zero-shot Anomaly Detection", https://arxiv.org/abs/2310.18961
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components import GaussianSmoothing, PromptedModel, upsample_patch_values
from anomalib_medclip.models.components.official import check_state, read_official_state, save_official_state
from anomalib_medclip.prompts import AGNOSTIC_OBJECT, prompt_sentences

__all__ = ["OFFICIAL_KEY", "TEMPERATURE", "AnomalyCLIPModel"]

logger = logging.getLogger(__name__)

OFFICIAL_KEY = "prompt_learner"
TEMPERATURE = 0.07  # fixed in the original, not CLIP's learned temperature
_UNUSED_KEYS = "compound_prompt_projections."  # built and saved by the original, never used in its forward
_UNUSED_WIDTH = 896


class AnomalyCLIPModel(PromptedModel):
    """Torch model of ``AnomalyCLIP``.

    Args:
        backbone: the shared CLIP wrapper (frozen).
        n_ctx: learned context words of each prompt (12).
        deep_length: deep text tokens per layer (4).
        deep_depth: deep tokens go into text layers ``2..deep_depth`` (9).
        map_layers: 1-indexed visual layers of the map (default: the last).
        vv_from: first visual layer on the value-value path (default: a quarter of the tower, 6 of 24).
        smoothing_sigma: Gaussian sigma of the map (4).
        fp16_prompt_rounding: round the deep text tokens to fp16, as the original does.
    """

    object_agnostic = True

    def __init__(
        self,
        backbone: CLIPBackbone,
        n_ctx: int = 12,
        deep_length: int = 4,
        deep_depth: int = 9,
        map_layers: Sequence[int] | None = None,
        vv_from: int | None = None,
        smoothing_sigma: float = 4.0,
        fp16_prompt_rounding: bool = True,
    ) -> None:
        super().__init__()
        depth = backbone.visual_depth
        self.vv_from = vv_from if vv_from is not None else max(1, depth // 4)
        self.map_layers = tuple(map_layers) if map_layers is not None else (depth,)
        if not self.map_layers or not all(self.vv_from <= layer <= depth for layer in self.map_layers):
            msg = (
                f"AnomalyCLIP map layers {self.map_layers} must lie on the value-value path, layers "
                f"{self.vv_from}..{depth} of '{backbone.info.name}'."
            )
            raise ValueError(msg)
        if not 1 <= deep_depth <= backbone.text_depth or not 0 < deep_length <= n_ctx:
            msg = (
                f"deep_depth={deep_depth} must be in 1..{backbone.text_depth} (text layers) and deep_length="
                f"{deep_length} in 1..n_ctx={n_ctx}."
            )
            raise ValueError(msg)
        self.backbone = backbone
        self.n_ctx = n_ctx
        self.fp16_prompt_rounding = fp16_prompt_rounding
        width = backbone.text_width
        self.ctx_pos = nn.Parameter(torch.empty(n_ctx, width).normal_(std=0.02))
        self.ctx_neg = nn.Parameter(torch.empty(n_ctx, width).normal_(std=0.02))
        self.deep_prompts = nn.ParameterList(
            nn.Parameter(torch.empty(deep_length, width).normal_(std=0.02)) for _ in range(deep_depth - 1)
        )
        self.smoothing = GaussianSmoothing(smoothing_sigma)
        self.register_buffer("tokens", torch.empty(0, dtype=torch.long), persistent=False)
        self._eval_text: torch.Tensor | None = None
        self.setup_text(AGNOSTIC_OBJECT)

    def _prepare_text(self, object_name: str) -> None:
        """Tokenise the two object-agnostic sentences; their phrase is always ``"object"``, as in the original."""
        if object_name != AGNOSTIC_OBJECT:
            msg = (
                f"AnomalyCLIP's prompts are object-agnostic: their phrase is always '{AGNOSTIC_OBJECT}', so "
                f"object_name={object_name!r} cannot be used."
            )
            raise ValueError(msg)
        self.tokens = self.backbone.tokenize(prompt_sentences(self.n_ctx))
        self._eval_text = None

    def train(self, mode: bool = True) -> AnomalyCLIPModel:
        """Forget the evaluation-time text features: the prompts change while training."""
        self._eval_text = None
        return super().train(mode)

    # ------------------------------------------------------------------ text
    def _deep(self) -> dict[int, torch.Tensor]:
        prompts = [p.half().to(p.dtype) if self.fp16_prompt_rounding else p for p in self.deep_prompts]
        return {layer: p.unsqueeze(0) for layer, p in enumerate(prompts, start=2)}

    def text_features(self) -> torch.Tensor:
        """L2-normalised normal and abnormal text features ``(2, D)``; cached outside training."""
        if not self.training and self._eval_text is not None:
            return self._eval_text
        embeddings = self.backbone.token_embeddings(self.tokens)
        context = torch.stack([self.ctx_pos, self.ctx_neg]).to(embeddings.dtype)
        embeddings = torch.cat([embeddings[:, :1], context, embeddings[:, 1 + self.n_ctx :]], dim=1)
        text = self.backbone.encode_text(self.tokens, embeddings=embeddings, deep_prompts=self._deep(), normalize=True)
        if not self.training:
            self._eval_text = text = text.detach()
        return text

    # ------------------------------------------------------------------ image
    def _encode(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised image embeddings ``(B, D)`` and normalised projected V-V patch tokens ``[(B, P, D)]``."""
        with torch.no_grad():  # the image tower is frozen and the prompts live in the text tower only
            vv_layers = range(self.vv_from, self.backbone.visual_depth + 1)
            features = self.backbone.encode_image(images, out_layers=self.map_layers, vv_layers=vv_layers)
            image = F.normalize(self.backbone.project_tokens(features.final_cls, final_norm=False), dim=-1)
            patches = [F.normalize(self.backbone.project_tokens(t), dim=-1) for t in features.patch_tokens]
        return image, patches

    def _outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image logits ``(B, 2)`` and per-layer class probabilities ``[(B, 2, S, S)]``."""
        image, patches = self._encode(images)
        text = self.text_features().to(image.dtype)
        logits = image @ text.T / TEMPERATURE
        size = images.shape[-1]
        probs = [
            upsample_patch_values((p @ text.T / TEMPERATURE).softmax(-1), size, align_corners=False) for p in patches
        ]
        return logits, probs

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image logits ``(B, 2)`` and per-layer probability maps ``[(B, 2, S, S)]`` (gradients reach the prompts)."""
        return self._outputs(images)

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores ``(B,)`` and anomaly maps ``(B, 1, S, S)``."""
        logits, probs = self._outputs(images)
        with torch.autocast(images.device.type, enabled=False):
            pred_score = logits.float().softmax(dim=-1)[:, 1]
            anomaly_map = torch.stack([p[:, 1].float() for p in probs]).sum(dim=0).unsqueeze(1)
            return InferenceBatch(pred_score=pred_score, anomaly_map=self.smoothing(anomaly_map))

    # ------------------------------------------------------------------ official checkpoints
    def _official_state(self) -> dict[str, torch.Tensor]:
        """The learnable tensors under the original's names and shapes."""
        state = {"ctx_pos": self.ctx_pos[None, None], "ctx_neg": self.ctx_neg[None, None]}
        state.update({f"compound_prompts_text.{i}": p for i, p in enumerate(self.deep_prompts)})
        return state

    def _official_buffers(self) -> dict[str, torch.Tensor]:
        """The original's buffers: SOS/suffix embeddings and token ids of both prompts (rebuilt from the backbone)."""
        with torch.no_grad():
            embeddings = self.backbone.token_embeddings(self.tokens)
        buffers = {}
        for row, kind in enumerate(("pos", "neg")):
            buffers[f"token_prefix_{kind}"] = embeddings[row, None, None, :1]
            buffers[f"token_suffix_{kind}"] = embeddings[row, None, None, 1 + self.n_ctx :]
            buffers[f"tokenized_prompts_{kind}"] = self.tokens[row, None, None]
        return buffers

    def load_official_checkpoint(self, path: str | Path) -> None:
        """Load the original's ``{"prompt_learner": ...}`` file (its unused ``compound_prompt_projections`` ignored).

        The file's prompt token ids must equal ours (same sentences, same tokenizer). Its stored SOS/suffix word
        embeddings are compared with the backbone's: a difference means the file was trained on other CLIP weights.
        """
        state = read_official_state(path, method="AnomalyCLIP", key=OFFICIAL_KEY)
        unused = [key for key in state if key.startswith(_UNUSED_KEYS)]
        buffers = self._official_buffers()
        check_state({**self._official_state(), **buffers}, state, path=path, method="AnomalyCLIP", ignore=unused)
        for kind in ("pos", "neg"):
            if not torch.equal(
                state[f"tokenized_prompts_{kind}"].to(self.tokens), buffers[f"tokenized_prompts_{kind}"]
            ):
                msg = f"'{path}': the prompt token ids differ from '{prompt_sentences(self.n_ctx)}' tokenised here."
                raise ValueError(msg)
        drift = max(float((state[k].float() - buffers[k].float().cpu()).abs().max()) for k in buffers if "token_" in k)
        if drift > 1e-3:
            logger.warning(
                "'%s' stores word embeddings that differ from this backbone's by up to %.3g: the prompts were "
                "trained on other CLIP weights than '%s' / '%s'.", path, drift, self.backbone.info.name,
                self.backbone.info.pretrained,
            )  # fmt: skip
        with torch.no_grad():
            self.ctx_pos.copy_(state["ctx_pos"][0, 0])
            self.ctx_neg.copy_(state["ctx_neg"][0, 0])
            for i, prompt in enumerate(self.deep_prompts):
                prompt.copy_(state[f"compound_prompts_text.{i}"])
        self._eval_text = None

    def save_official_checkpoint(self, path: str | Path) -> Path:
        """Write the prompts in the original's format, loadable by its strict ``load_state_dict``.

        Its unused ``compound_prompt_projections`` (``Linear(text width, 896)`` per deep layer) are written as zeros.
        """
        width = self.backbone.text_width
        unused = {}
        for i in range(len(self.deep_prompts)):
            unused[f"{_UNUSED_KEYS}{i}.weight"] = torch.zeros(_UNUSED_WIDTH, width)
            unused[f"{_UNUSED_KEYS}{i}.bias"] = torch.zeros(_UNUSED_WIDTH)
        state = {**self._official_state(), **self._official_buffers(), **unused}
        return save_official_state(state, path, key=OFFICIAL_KEY)
