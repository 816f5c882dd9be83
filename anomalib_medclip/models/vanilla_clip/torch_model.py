# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Plain CLIP zero-shot anomaly scoring: the baseline of the cross-modal paper's Table 1.

Image score: softmax over the cosine similarities of the image embedding with a "normal" and an "anomalous" text
feature, at CLIP's own temperature (``exp(logit_scale)``). Pixel map: the patch tokens of chosen visual layers are
mapped into the joint space with ``ln_post``/``proj`` and scored the same way, averaged over layers, upsampled to the
input size and smoothed with a Gaussian.

Paper: "Learning Transferable Visual Models From Natural Language Supervision", https://arxiv.org/abs/2103.00020
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components import GaussianSmoothing, PromptedModel, layer_maps_to_image
from anomalib_medclip.prompts import state_prompts

__all__ = ["VanillaCLIPModel"]


class VanillaCLIPModel(PromptedModel):
    """CLIP with fixed normal/anomalous prompts.

    Args:
        backbone: the shared CLIP wrapper.
        map_layers: 1-indexed visual layers whose patch tokens make the pixel map; empty disables the map.
        prompt_ensemble: average an ensemble of state words x templates instead of the two plain sentences.
        smoothing_sigma: sigma in pixels of the Gaussian applied to the map (0 disables it).
    """

    def __init__(
        self,
        backbone: CLIPBackbone,
        map_layers: Sequence[int] = (),
        prompt_ensemble: bool = False,
        smoothing_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.map_layers = tuple(map_layers)
        self.prompt_ensemble = prompt_ensemble
        self.smoothing = GaussianSmoothing(smoothing_sigma)
        self.sentences: tuple[tuple[str, ...], ...] = ()

    def _prepare_text(self, object_name: str) -> None:
        """The normal and the anomalous sentence(s) of ``object_name``."""
        self.sentences = state_prompts(object_name, ensemble=self.prompt_ensemble)

    def text_features(self) -> torch.Tensor:
        """Normal/anomalous text features ``(2, D)``: each state's sentence features averaged, L2-normalised."""
        self._require_text()
        encoded = [self.backbone.encode_fixed_text(group, normalize=True).mean(dim=0) for group in self.sentences]
        return torch.stack([F.normalize(feature, dim=-1) for feature in encoded])

    def image_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normal/anomalous logits of each image ``(B, 2)`` and the per-layer patch logits ``[(B, P, 2)]``."""
        text = self.text_features()
        features = self.backbone.encode_image(images, out_layers=self.map_layers)
        scale = self.backbone.logit_scale
        logits = scale * F.normalize(features.pooled, dim=-1) @ text.T
        patch_logits = [
            scale * F.normalize(self.backbone.project_tokens(t), dim=-1) @ text.T for t in features.patch_tokens
        ]
        return logits, patch_logits

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores ``(B,)`` (probability of "anomalous") and anomaly maps ``(B, 1, S, S)``."""
        logits, patch_logits = self.image_logits(images)
        with torch.autocast(images.device.type, enabled=False):  # under mixed precision, scores and maps in float32
            pred_score = logits.float().softmax(dim=-1)[:, 1]
            if not patch_logits:
                return InferenceBatch(pred_score=pred_score)
            maps = layer_maps_to_image([p.float().softmax(dim=-1)[..., 1] for p in patch_logits], images.shape[-1])
            return InferenceBatch(pred_score=pred_score, anomaly_map=self.smoothing(maps))
