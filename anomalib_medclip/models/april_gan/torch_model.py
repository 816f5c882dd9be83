# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""APRIL-GAN (the VAND 2023 challenge method): linear adapters on CLIP patch tokens plus a prompt ensemble.

- Text: 7 normal and 5 abnormal state phrases of the object, each in 35 templates (245 + 175 sentences); the
  L2-normalised sentence features are averaged per state group and normalised again, giving ``T`` ``(D, 2)``. They
  are encoded once per device by the shared backbone (cached), in groups truncated at their end-of-text token.
- Image score: ``softmax(100 * norm(pooled) @ T)[abnormal]``.
- Map: for each tapped layer ``l``, a trainable ``Linear(Dv, D)`` maps the raw patch tokens (block output, CLS
  dropped, no ``ln_post``/``proj``) into the joint space; ``100 * norm(.) @ T`` gives two logits per patch, which are
  upsampled bilinearly with ``align_corners=True`` and soft-maxed; the abnormal probabilities are summed over layers.
- Few-shot: raw patch tokens of k normal reference images form a memory bank per layer; each patch scores
  ``min over the memory of (1 - cos)``, upsampled the same way and summed over layers, and added to the map. The
  image score then becomes ``0.5 * (score + min-max normalised max of the map)``, with the min and max taken over the
  validation split (the original takes them over the test images of the class; see ``README.md``).

Report: "APRIL-GAN: A Zero-/Few-Shot Anomaly Classification and Segmentation Method for CVPR 2023 VAND Workshop
Challenge", https://arxiv.org/abs/2305.17382
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.components import DynamicBufferMixin
from torch import nn

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components import GaussianSmoothing, PromptedModel, upsample_patch_values
from anomalib_medclip.models.components.official import check_state, read_official_state, save_official_state
from anomalib_medclip.models.components.text import ensemble_text_features
from anomalib_medclip.prompts import ensemble_sentences

__all__ = ["OFFICIAL_KEY", "AprilGANModel"]

OFFICIAL_KEY = "trainable_linearlayer"
LOGIT_SCALE = 100.0  # fixed in the original, not CLIP's learned temperature


class AprilGANModel(DynamicBufferMixin, PromptedModel):
    """Torch model of ``AprilGAN``.

    Args:
        backbone: the shared CLIP wrapper (frozen).
        layers: 1-indexed visual layers with a linear adapter each (the zero-shot map).
        few_shot_layers: layers of the few-shot memory bank (``None`` = ``layers``).
        smoothing_sigma: Gaussian sigma of the map in pixels; 0 (the original) disables it.
    """

    def __init__(
        self,
        backbone: CLIPBackbone,
        layers: Sequence[int],
        few_shot_layers: Sequence[int] | None = None,
        smoothing_sigma: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.layers = tuple(layers)
        self.few_shot_layers = tuple(few_shot_layers) if few_shot_layers is not None else self.layers
        if not self.layers:
            msg = "AprilGAN needs at least one layer for its linear adapters."
            raise ValueError(msg)
        self.fc = nn.ModuleList(nn.Linear(backbone.visual_width, backbone.embed_dim) for _ in self.layers)
        self.smoothing = GaussianSmoothing(smoothing_sigma)
        self.sentences: tuple[list[str], list[str]] = ([], [])
        self.register_buffer("memory_bank", torch.empty(0))  # (len(few_shot_layers), k * P, Dv)
        self.register_buffer("score_range", torch.empty(0))  # (2,): min and max of the max map (validation)

    # ------------------------------------------------------------------ set-up
    def _prepare_text(self, object_name: str) -> None:
        """The 245 normal and 175 abnormal sentences of the ensemble for ``object_name``."""
        self.sentences = ensemble_sentences(object_name)

    def text_features(self) -> torch.Tensor:
        """Normal and abnormal text features ``(D, 2)`` of the 420-sentence ensemble (cached by the backbone)."""
        self._require_text()
        return ensemble_text_features(self.backbone, *self.sentences)

    @torch.no_grad()
    def setup_memory(self, reference_images: torch.Tensor) -> None:
        """Memory bank of the raw patch tokens of normal reference images ``(k, 3, S, S)`` (CLIP-normalised)."""
        tokens = self.backbone.encode_image(reference_images, out_layers=self.few_shot_layers).patch_tokens
        self.memory_bank = torch.stack([layer.reshape(-1, layer.shape[-1]) for layer in tokens])

    def set_score_range(self, max_maps: torch.Tensor) -> None:
        """Min-max range of per-image map maxima used by the few-shot image score (from a calibration split)."""
        low, high = max_maps.min(), max_maps.max()
        if not high > low:
            msg = f"Cannot normalise the max map: all {max_maps.numel()} calibration images give {float(high):.6g}."
            raise ValueError(msg)
        self.score_range = torch.stack([low, high]).to(self.score_range.device)

    @property
    def few_shot(self) -> bool:
        """Whether a memory bank is set."""
        return self.memory_bank.numel() > 0

    # ------------------------------------------------------------------ official checkpoints
    def load_official_checkpoint(self, path: str | Path) -> None:
        """Load the original's ``{"trainable_linearlayer": {fc.N.weight, fc.N.bias}}`` file into the adapters."""
        state = read_official_state(path, method="APRIL-GAN", key=OFFICIAL_KEY)
        own = {f"fc.{key}": value for key, value in self.fc.state_dict().items()}
        check_state(own, state, path=path, method="APRIL-GAN")
        self.fc.load_state_dict({key.removeprefix("fc."): value for key, value in state.items()})

    def save_official_checkpoint(self, path: str | Path) -> Path:
        """Write the adapters in the original's format (atomically), e.g. to run them in the original code."""
        return save_official_state({f"fc.{k}": v for k, v in self.fc.state_dict().items()}, path, key=OFFICIAL_KEY)

    # ------------------------------------------------------------------ forward
    def _encode(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        layers = sorted({*self.layers, *(self.few_shot_layers if self.few_shot else ())})
        features = self.backbone.encode_image(images, out_layers=layers)
        return features.pooled, dict(zip(layers, features.patch_tokens, strict=True))

    def layer_probabilities(
        self, tokens: Mapping[int, torch.Tensor], size: int, text: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Per adapter layer, normal/abnormal probabilities ``(B, 2, size, size)`` (the training output).

        ``text``: the ensemble's features when the caller has them already (``forward``); else they are read here.
        """
        text = self.text_features() if text is None else text
        probs = []
        for layer, linear in zip(self.layers, self.fc, strict=True):
            logits = LOGIT_SCALE * F.normalize(linear(tokens[layer]), dim=-1) @ text
            probs.append(upsample_patch_values(logits, size, align_corners=True).softmax(dim=1))
        return probs

    def few_shot_map(self, tokens: Mapping[int, torch.Tensor], size: int) -> torch.Tensor:
        """``sum_l upsample(min over memory of (1 - cos))`` ``(B, 1, size, size)``."""
        if not self.few_shot:
            msg = "No memory bank: call `setup_memory(reference_images)` first."
            raise RuntimeError(msg)
        total = None
        for layer, memory in zip(self.few_shot_layers, self.memory_bank, strict=True):
            memory = F.normalize(memory, dim=-1)
            # one image at a time bounds the (P, k*P) similarity matrix (ViT-L at 518 px: 1369 x 5476 per shot)
            distance = torch.stack([1 - (F.normalize(t, dim=-1) @ memory.T).amax(dim=-1) for t in tokens[layer]])
            upsampled = upsample_patch_values(distance.unsqueeze(-1), size, align_corners=True)
            total = upsampled if total is None else total + upsampled
        return total

    def forward_train(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer probabilities ``[(B, 2, S, S)]`` of the zero-shot branch (gradients reach the adapters only)."""
        with torch.no_grad():
            _, tokens = self._encode(images)
        return self.layer_probabilities(tokens, images.shape[-1])

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores ``(B,)`` and anomaly maps ``(B, 1, S, S)``."""
        pooled, tokens = self._encode(images)
        with torch.autocast(images.device.type, enabled=False):  # the light head in float32 under mixed precision
            pooled, tokens = pooled.float(), {layer: t.float() for layer, t in tokens.items()}
            text = self.text_features()
            pred_score = (LOGIT_SCALE * F.normalize(pooled, dim=-1) @ text.float()).softmax(dim=-1)[:, 1]
            size = images.shape[-1]
            probs = self.layer_probabilities(tokens, size, text)
            anomaly_map = torch.stack([p[:, 1] for p in probs]).sum(dim=0).unsqueeze(1)
            if self.few_shot:
                anomaly_map = anomaly_map + self.few_shot_map(tokens, size)
            anomaly_map = self.smoothing(anomaly_map)
            if self.few_shot and self.score_range.numel():
                low, high = self.score_range
                pred_score = 0.5 * (pred_score + (anomaly_map.amax(dim=(1, 2, 3)) - low) / (high - low))
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)
