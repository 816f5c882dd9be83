# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MedCrossModalCLIP: bi-directional cross-modal prompt learning on CLIP, with image scores and pixel maps.

Trains B_t, B_v and B_vt (Adam, ``lr`` ~1e-3) and, optionally, the last ``finetune_layers`` visual blocks at the
paper's ``clip_lr`` (1e-5), with the image classification loss plus focal + Dice losses on the maps when the batch
has masks. anomalib only calls ``fit`` for ``LearningType.ONE_CLASS``, so that is what it reports ("trainable").
A result is zero-shot only when the target data never touched training or model selection.

Example:
    >>> model = MedCrossModalCLIP(backbone="ViT-L-14-336", pretrained="openai")  # doctest: +SKIP
    >>> Engine(max_epochs=10).train(model, datamodule=DemoBraTS())  # doctest: +SKIP
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
from anomalib_medclip.models.components.losses import MapLoss
from anomalib_medclip.models.cross_modal_clip.torch_model import MedCrossModalCLIPModel
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["MedCrossModalCLIP"]


class MedCrossModalCLIP(MedCLIPModuleMixin, AnomalibModule):
    """Cross-modal prompt learning (B_t, B_v, B_vt) for medical anomaly detection and segmentation.

    Args:
        backbone, pretrained, image_size, activation, pos_embed_mode, seed: the CLIP backbone (see ``VanillaCLIP``).
        object_name: what the images show; ``None`` takes the datamodule's.
        n_ctx: m, context tokens after SOS conditioned by B_t (1..4).
        use_bt, use_bv, use_bvt: block switches for ablations.
        prompt_depth: layers receiving prompts (``None`` = all).
        map_layers: 1-indexed visual layers of the pixel map (``None`` = quarters of the tower).
        smoothing_sigma: Gaussian sigma of the map.
        finetune_layers: last visual blocks to unfreeze (the paper fine-tunes 2).
        lr: learning rate of the new blocks; clip_lr: of the unfrozen CLIP blocks.
        map_loss_weight: weight of focal + Dice on the maps (used when the batch has masks).
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
        volume_evaluator: the 3D evaluation of volumes (``True`` = default settings, ``False`` = off).
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
        n_ctx: int = 4,
        use_bt: bool = True,
        use_bv: bool = True,
        use_bvt: bool = True,
        prompt_depth: int | None = None,
        map_layers: Sequence[int] | None = None,
        smoothing_sigma: float = 4.0,
        finetune_layers: int = 0,
        lr: float = 1e-3,
        clip_lr: float = 1e-5,
        map_loss_weight: float = 1.0,
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
            lambda clip: MedCrossModalCLIPModel(
                clip, n_ctx=n_ctx, use_bt=use_bt, use_bv=use_bv, use_bvt=use_bvt, prompt_depth=prompt_depth,
                map_layers=tuple(map_layers) if map_layers is not None else quarter_layers(clip.visual_depth),
                smoothing_sigma=smoothing_sigma,
            )
        )  # fmt: skip
        self.object_name = object_name
        self.clip_params = self.model.backbone.unfreeze_last_visual_blocks(finetune_layers)
        self.map_loss = MapLoss()
        self.lr, self.clip_lr, self.map_loss_weight = lr, clip_lr, map_loss_weight

    @property
    def is_trainable(self) -> bool:
        """Always: the cross-modal blocks are learnt."""
        return True

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Image cross-entropy, plus focal + Dice on the maps when the batch carries masks."""
        del args, kwargs
        logits, maps = self.model.forward_train(batch.image)
        loss = F.cross_entropy(logits, batch.gt_label.long())
        if maps is not None and batch.gt_mask is not None and self.map_loss_weight > 0:
            loss = loss + self.map_loss_weight * self.map_loss(maps, batch.gt_mask)
        self.log_train_loss(loss, batch_size=len(logits))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with two groups: the new blocks at ``lr`` and the unfrozen CLIP blocks at ``clip_lr``."""
        groups = [{"params": self.learnable_parameters(), "lr": self.lr}]
        if self.clip_params:
            groups.append({"params": self.clip_params, "lr": self.clip_lr})
        return torch.optim.Adam(groups)
