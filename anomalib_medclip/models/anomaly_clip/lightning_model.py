# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP: object-agnostic prompts and a value-value attention path, zero-shot through released prompts.

- Without ``official_checkpoint`` the prompts are trained on the datamodule's labelled training split (the
  original's auxiliary-data protocol): ``map_loss_weight * sum_l [focal + Dice(abnormal) + Dice(normal)]`` on the
  maps plus cross-entropy of the image logits; Adam lr 1e-3, betas (0.5, 0.999) (the original: 15 epochs, batch 8,
  518 px). Batches without masks train the image term only. anomalib only calls ``fit`` for
  ``LearningType.ONE_CLASS``, so that is what it reports ("trainable").
- With ``official_checkpoint`` (the original's ``{"prompt_learner": ...}`` files) nothing is trained: ZERO_SHOT.

Example:
    >>> model = AnomalyCLIP(official_checkpoint="checkpoints/9_12_4_multiscale_visa/epoch_15.pth")  # doctest: +SKIP
    >>> Engine().test(model, datamodule=DemoBraTS())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import nn

from anomalib_medclip.backbones import Activation, PosEmbedMode
from anomalib_medclip.models.anomaly_clip.torch_model import AnomalyCLIPModel
from anomalib_medclip.models.components import MedCLIPModuleMixin
from anomalib_medclip.models.components.losses import MapLoss
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["AnomalyCLIP"]


class AnomalyCLIP(MedCLIPModuleMixin, AnomalibModule):
    """AnomalyCLIP zero-shot anomaly detection and segmentation.

    Args:
        backbone: open_clip architecture; the original supports OpenAI ``"ViT-L-14-336"`` only.
        pretrained: open_clip tag, local weights file, or ``None`` for seeded random weights (tests only).
        image_size: input size (the original: 518); ``None`` keeps the native size.
        activation: ``"auto"`` (QuickGELU for OpenAI weights, as the original), ``"gelu"`` or ``"quick_gelu"``.
        pos_embed_mode: positional-embedding resize kernel (the original: bilinear).
        seed: seed of a random backbone and of the prompts' initialisation.
        n_ctx, deep_length, deep_depth: prompt shape (12 context words; 4 deep tokens into text layers 2..9).
        map_layers: layers of the map (``None`` = the last, as the released checkpoints were trained).
        vv_from: first layer of the value-value path (``None`` = a quarter of the tower: 6 of 24).
        smoothing_sigma: Gaussian sigma of the map (4).
        fp16_prompt_rounding: round the deep tokens to fp16 like the original.
        official_checkpoint: the original's prompt file; given, the model is not trained.
        lr: Adam learning rate of the prompts.
        map_loss_weight: weight of the map losses (4, the original's ``lam``).
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
        volume_evaluator: the 3D evaluation of volumes (``True`` = default settings, ``False`` = off).

    The prompts are object-agnostic ("object" / "damaged object", as the original), so there is no ``object_name``.
    """

    def __init__(
        self,
        backbone: str = "ViT-L-14-336",
        pretrained: str | Path | None = "openai",
        image_size: int | None = 518,
        activation: Activation = "auto",
        pos_embed_mode: PosEmbedMode = "bilinear",
        seed: int = 0,
        n_ctx: int = 12,
        deep_length: int = 4,
        deep_depth: int = 9,
        map_layers: Sequence[int] | None = None,
        vv_from: int | None = None,
        smoothing_sigma: float = 4.0,
        fp16_prompt_rounding: bool = True,
        official_checkpoint: str | Path | None = None,
        lr: float = 1e-3,
        map_loss_weight: float = 4.0,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
        volume_evaluator: VolumeEvaluator | bool = True,
    ) -> None:
        super().__init__(
            backbone=backbone, pretrained=pretrained, image_size=image_size, activation=activation,
            pos_embed_mode=pos_embed_mode, seed=seed, pre_processor=pre_processor, post_processor=post_processor,
            evaluator=evaluator, visualizer=visualizer, volume_evaluator=volume_evaluator,
        )  # fmt: skip
        self.model = self.build_model(
            lambda clip: AnomalyCLIPModel(
                clip, n_ctx=n_ctx, deep_length=deep_length, deep_depth=deep_depth, map_layers=map_layers,
                vv_from=vv_from, smoothing_sigma=smoothing_sigma, fp16_prompt_rounding=fp16_prompt_rounding,
            )
        )  # fmt: skip
        if official_checkpoint is not None:
            self.model.load_official_checkpoint(official_checkpoint)
        self.map_loss = MapLoss.reference(normal_dice=True)
        self.official_checkpoint = official_checkpoint
        self.lr, self.map_loss_weight = lr, map_loss_weight

    @property
    def is_trainable(self) -> bool:
        """Unless the original's released prompts are loaded (``official_checkpoint``): then zero-shot."""
        return self.official_checkpoint is None

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Image cross-entropy plus the weighted map losses (image term only for batches without masks)."""
        del args, kwargs
        logits, probs = self.model.forward_train(batch.image)
        loss = F.cross_entropy(logits, batch.gt_label.long())
        if (map_loss := self.layer_map_loss(probs, batch)) is not None:
            loss = loss + self.map_loss_weight * map_loss
        self.log_train_loss(loss, batch_size=len(logits))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        """Adam over the prompts (betas of the original); nothing to train with an official checkpoint."""
        if not self.is_trainable:
            return None
        return torch.optim.Adam(self.learnable_parameters(), lr=self.lr, betas=(0.5, 0.999))
