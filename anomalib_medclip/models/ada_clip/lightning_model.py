# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP: hybrid learnable prompts and hybrid semantic fusion, at any batch size.

- Without ``official_checkpoint`` the prompts, projections and dynamic-prompt generators are trained on the
  datamodule's labelled training split (the original's auxiliary-data protocol): focal loss of the image
  probabilities plus ``sum_l [focal + Dice(abnormal) + Dice(normal)]`` of the per-layer maps; AdamW lr 1e-2,
  betas (0.5, 0.999), weight decay 0.01 (the original: 5 epochs, batch 1, which it enforces; here any batch size).
  Batches without masks train the image term only. anomalib only calls ``fit`` for ``LearningType.ONE_CLASS``, so
  that is what it reports ("trainable").
- With ``official_checkpoint`` (the original's flat ``clip_model.*`` files) nothing is trained: ZERO_SHOT.

Example:
    >>> model = AdaCLIP(official_checkpoint="pretrained_mvtec_colondb.pth")  # doctest: +SKIP
    >>> Engine().test(model, datamodule=DemoBraTS())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import nn

from anomalib_medclip.backbones import Activation, PosEmbedMode, config_activation
from anomalib_medclip.models.ada_clip.torch_model import AdaCLIPModel
from anomalib_medclip.models.components import MedCLIPModuleMixin, quarter_layers
from anomalib_medclip.models.components.losses import MapLoss, focal_loss
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["AdaCLIP"]


class AdaCLIP(MedCLIPModuleMixin, AnomalibModule):
    """AdaCLIP zero-shot anomaly detection and segmentation.

    Args:
        backbone: open_clip architecture; the original uses OpenAI ``"ViT-L-14-336"``.
        pretrained: open_clip tag, local weights file, or ``None`` for seeded random weights (tests only).
        image_size: input size (the original: 518); ``None`` keeps the native size.
        activation: ``"original"`` (the architecture config's, i.e. ``nn.GELU`` even for OpenAI weights, which is
            what the original builds and its released files were trained with), ``"auto"``, ``"gelu"``,
            ``"quick_gelu"``.
        pos_embed_mode: positional-embedding resize kernel (the original: bicubic without antialias).
        seed: seed of a random backbone and of the initialisation of the learnable parts.
        object_name: object phrase of the prompts; ``None`` takes the datamodule's.
        layers: tapped layers (``None`` = quarters of the tower: 6/12/18/24 on ViT-L).
        prompt_length, prompt_depth, prompting_branch, prompting_type: prompt design (5, 4, ``"VL"``, ``"SD"``).
        use_hsf, k_clusters, hsf_seed: hybrid semantic fusion of the image score (on, 20 clusters, seed 0).
        smoothing_sigma: Gaussian sigma of the map (4).
        fp16_prompt_rounding: round prompt tokens to fp16 like the original.
        official_checkpoint: the original's weights file; given, the model is not trained.
        lr, weight_decay: AdamW settings (1e-2, 0.01).
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
        volume_evaluator: the 3D evaluation of volumes (``True`` = default settings, ``False`` = off).
    """

    def __init__(
        self,
        backbone: str = "ViT-L-14-336",
        pretrained: str | Path | None = "openai",
        image_size: int | None = 518,
        activation: Activation | Literal["original"] = "original",
        pos_embed_mode: PosEmbedMode = "bicubic",
        seed: int = 0,
        object_name: str | None = None,
        layers: Sequence[int] | None = None,
        prompt_length: int = 5,
        prompt_depth: int = 4,
        prompting_branch: Literal["VL", "V", "L", ""] = "VL",
        prompting_type: Literal["SD", "S", "D"] = "SD",
        use_hsf: bool = True,
        k_clusters: int = 20,
        hsf_seed: int = 0,
        smoothing_sigma: float = 4.0,
        fp16_prompt_rounding: bool = True,
        official_checkpoint: str | Path | None = None,
        lr: float = 1e-2,
        weight_decay: float = 0.01,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
        volume_evaluator: VolumeEvaluator | bool = True,
    ) -> None:
        super().__init__(
            backbone=backbone, pretrained=pretrained, image_size=image_size, pos_embed_mode=pos_embed_mode, seed=seed,
            activation=config_activation(backbone) if activation == "original" else activation,
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer,
            volume_evaluator=volume_evaluator,
        )  # fmt: skip
        self.model = self.build_model(
            lambda clip: AdaCLIPModel(
                clip, layers if layers is not None else quarter_layers(clip.visual_depth),
                prompt_length=prompt_length, prompt_depth=prompt_depth, prompting_branch=prompting_branch,
                prompting_type=prompting_type, use_hsf=use_hsf, k_clusters=k_clusters, hsf_seed=hsf_seed,
                smoothing_sigma=smoothing_sigma, fp16_prompt_rounding=fp16_prompt_rounding,
            )
        )  # fmt: skip
        if official_checkpoint is not None:
            self.model.load_official_checkpoint(official_checkpoint)
        self.object_name = object_name
        self.map_loss = MapLoss.reference(normal_dice=True)
        self.official_checkpoint = official_checkpoint
        self.lr, self.weight_decay = lr, weight_decay

    @property
    def is_trainable(self) -> bool:
        """Unless the original's released weights are loaded (``official_checkpoint``): then zero-shot."""
        return self.official_checkpoint is None

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Focal loss of the image probabilities plus the map losses of every layer (image term only without masks)."""
        del args, kwargs
        probs, maps = self.model.forward_train(batch.image)
        loss = focal_loss(probs, batch.gt_label.long())
        if (map_loss := self.layer_map_loss(maps, batch)) is not None:
            loss = loss + map_loss
        self.log_train_loss(loss, batch_size=len(probs))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        """AdamW over the learnable parts (betas of the original); nothing to train with an official checkpoint."""
        if not self.is_trainable:
            return None
        return torch.optim.AdamW(
            self.learnable_parameters(), lr=self.lr, betas=(0.5, 0.999), weight_decay=self.weight_decay
        )
