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
from anomalib_medclip.models.components import MedCLIPModuleMixin
from anomalib_medclip.models.components.losses import MapLoss
from anomalib_medclip.models.cross_modal_clip.torch_model import MedCrossModalCLIPModel
from anomalib_medclip.models.vanilla_clip.torch_model import default_map_layers

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
    ) -> None:
        clip, components = self.build_backbone(
            {"pre_processor": pre_processor, "post_processor": post_processor, "evaluator": evaluator,
             "visualizer": visualizer},
            name=backbone, pretrained=pretrained, image_size=image_size, activation=activation,
            pos_embed_mode=pos_embed_mode, seed=seed,
        )  # fmt: skip
        super().__init__(**components)
        with torch.random.fork_rng(devices=[]):  # the new blocks' initialisation is part of the model's identity
            torch.manual_seed(seed)
            self.model = MedCrossModalCLIPModel(
                clip,
                n_ctx=n_ctx,
                use_bt=use_bt,
                use_bv=use_bv,
                use_bvt=use_bvt,
                prompt_depth=prompt_depth,
                map_layers=tuple(map_layers) if map_layers is not None else default_map_layers(clip.visual_depth),
                smoothing_sigma=smoothing_sigma,
            )
        self.clip_params = clip.unfreeze_last_visual_blocks(finetune_layers)
        self.object_name = object_name
        self.map_loss = MapLoss()

    def setup(self, stage: str | None = None) -> None:
        """Tokenise the prompts once the object phrase is known."""
        del stage
        if self.model.object_name is None:
            self.model.setup(self.resolve_object_name(self.object_name))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the object phrase the prompts were trained with."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["object_name"] = self.model.object_name

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the trained object phrase."""
        super().on_load_checkpoint(checkpoint)
        if checkpoint.get("object_name"):
            self.model.setup(checkpoint["object_name"])

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Image cross-entropy, plus focal + Dice on the maps when the batch carries masks."""
        del args, kwargs
        logits, maps = self.model.forward_train(batch.image)
        loss = F.cross_entropy(logits, batch.gt_label.long())
        if maps is not None and batch.gt_mask is not None and self.hparams.map_loss_weight > 0:
            loss = loss + self.hparams.map_loss_weight * self.map_loss(maps, batch.gt_mask)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with two groups: the new blocks at ``lr`` and the unfrozen CLIP blocks at ``clip_lr``."""
        blocks = [
            p for name, p in self.model.named_parameters() if p.requires_grad and not name.startswith("backbone.")
        ]
        groups = [{"params": blocks, "lr": self.hparams.lr}]
        if self.clip_params:
            groups.append({"params": self.clip_params, "lr": self.hparams.clip_lr})
        return torch.optim.Adam(groups)
