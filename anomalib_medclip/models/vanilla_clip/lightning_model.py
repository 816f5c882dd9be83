# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""VanillaCLIP: plain CLIP zero-shot prompts and last-layers fine-tuning (the cross-modal paper's baselines).

- ``finetune_layers=0`` (default): zero-shot. anomalib only validates (to learn thresholds) and tests.
- ``finetune_layers=N``: the last N visual blocks are trained with the image classification loss on the training
  split's labelled images (the paper's CLIP^FT rows: Adam, lr 1e-5, batch 8, 10 epochs). anomalib only calls
  ``fit`` for ``LearningType.ONE_CLASS``, so that is what this mode reports; it means "trainable" here.

Example:
    >>> from anomalib.engine import Engine  # doctest: +SKIP
    >>> model = VanillaCLIP(backbone="ViT-L-14-336", pretrained="openai")  # doctest: +SKIP
    >>> Engine().train(model, datamodule=DemoBraTS())  # doctest: +SKIP
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
from anomalib_medclip.models.components import MedCLIPModuleMixin, quarter_layers
from anomalib_medclip.models.vanilla_clip.torch_model import VanillaCLIPModel
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["VanillaCLIP"]


class VanillaCLIP(MedCLIPModuleMixin, AnomalibModule):
    """Plain CLIP anomaly detection and segmentation.

    Args:
        backbone: open_clip architecture or ``hf-hub:`` id. Defaults to the paper's ``"ViT-L-14-336"``.
        pretrained: open_clip tag, local weights file, or ``None`` for seeded random weights (offline tests/demos).
        image_size: input size; ``None`` keeps the backbone's native size.
        activation: ``"auto"`` (what the weights were trained with, QuickGELU for OpenAI), ``"gelu"``, ``"quick_gelu"``.
        pos_embed_mode: positional-embedding resize kernel for a non-native ``image_size``.
        seed: seed of the random backbone when ``pretrained`` is ``None``.
        object_name: what the images show (``"brain MRI scan"``); ``None`` takes the datamodule's.
        prompt_ensemble: average an ensemble of prompts instead of the two plain sentences.
        map_layers: 1-indexed layers for the pixel map; ``None`` picks the quarters of the tower.
        smoothing_sigma: Gaussian sigma (pixels) applied to the map.
        finetune_layers: number of last visual blocks to train (0 = zero-shot).
        lr: Adam learning rate for the fine-tuned blocks.
        pre_processor, post_processor, evaluator, visualizer: anomalib components (``True`` = defaults).
        volume_evaluator: the 3D evaluation of volumes (:class:`~anomalib_medclip.volumes.VolumeEvaluator`,
            ``True`` = default settings, ``False`` = off).
    """

    def __init__(
        self,
        backbone: str = "ViT-L-14-336",
        pretrained: str | Path | None = "openai",
        image_size: int | None = None,
        activation: Activation = "auto",
        pos_embed_mode: PosEmbedMode = "bicubic-antialias",
        seed: int = 0,
        object_name: str | None = None,
        prompt_ensemble: bool = False,
        map_layers: Sequence[int] | None = None,
        smoothing_sigma: float = 4.0,
        finetune_layers: int = 0,
        lr: float = 1e-5,
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
            lambda clip: VanillaCLIPModel(
                clip,
                tuple(map_layers) if map_layers is not None else quarter_layers(clip.visual_depth),
                prompt_ensemble=prompt_ensemble,
                smoothing_sigma=smoothing_sigma,
            )
        )
        self.object_name = object_name
        self.clip_params = self.model.backbone.unfreeze_last_visual_blocks(finetune_layers)
        self.lr = lr

    @property
    def is_trainable(self) -> bool:
        """Only with fine-tuned blocks (``finetune_layers > 0``); otherwise zero-shot."""
        return bool(self.clip_params)

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Cross-entropy of the normal/anomalous image logits against the labels."""
        del args, kwargs
        logits, _ = self.model.image_logits(batch.image)
        loss = F.cross_entropy(logits, batch.gt_label.long())
        self.log_train_loss(loss, batch_size=len(logits))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        """Adam over the fine-tuned blocks; nothing to optimise in zero-shot mode."""
        return torch.optim.Adam(self.clip_params, lr=self.lr) if self.is_trainable else None
