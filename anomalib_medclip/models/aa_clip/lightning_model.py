# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AA-CLIP: two-stage training of anomaly-aware text anchors, then visual adapters aligned to them.

- Stage 1, the first ``text_epochs`` epochs (5): the text adapters learn anchors that separate normal from abnormal
  on the teacher's patch features: ``focal + Dice(normal) + Dice(abnormal)`` of the last level's map plus
  ``text_norm_weight * (T_normal . T_abnormal)^2``; Adam lr 1e-5, betas (0.5, 0.999).
- Stage 2, the following ``image_epochs`` (20): the image adapters and projections, with the anchors frozen:
  cross-entropy of ``det @ T^T`` plus the map loss summed over levels; Adam lr 5e-4, betas (0.5, 0.999), learning
  rate halved after 16000 and 32000 steps (the original's ``MultiStepLR``).
- Trained on the datamodule's labelled training split with masks (the original trains on VisA, an industrial set);
  batches without masks train the stage-2 cross-entropy only and are skipped in stage 1.
  Run ``text_epochs + image_epochs`` epochs (``--trainer.max_epochs 25``) to train as the original; the stage is
  chosen by the epoch, any batch size; one Adam with a text and an image parameter group does what the original's two
  Adams do (see ``configure_optimizers``).
- With ``official_checkpoint`` (the original's ``image_adapter*.pth``, and ``text_adapter.pth`` beside it or given
  as ``official_text_checkpoint``) nothing is trained: ZERO_SHOT.

Example:
    >>> model = AACLIP(official_checkpoint="ckpt/baseline/image_adapter_15.pth")  # doctest: +SKIP
    >>> Engine().test(model, datamodule=DemoBraTS())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import nn

from anomalib_medclip.backbones import Activation, PosEmbedMode, config_activation
from anomalib_medclip.models.aa_clip.torch_model import TEXT_FILE, AACLIPModel
from anomalib_medclip.models.components import MedCLIPModuleMixin
from anomalib_medclip.models.components.losses import MapLoss
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["AACLIP"]

logger = logging.getLogger(__name__)


def _text_checkpoint(image_path: str | Path, text_path: str | Path | None, text_epochs: int) -> Path | None:
    """The text-adapter file that goes with an official image-adapter file (``None``: plain CLIP text)."""
    if text_path is not None:
        return Path(text_path).expanduser()
    sibling = Path(image_path).expanduser().parent / TEXT_FILE
    if sibling.is_file():
        return sibling
    if text_epochs == 0:
        return None
    msg = (
        f"No '{TEXT_FILE}' beside '{image_path}': give the original's text adapters as official_text_checkpoint=..., "
        "or text_epochs=0 to use plain CLIP text features (what the original's test.py falls back to silently)."
    )
    raise FileNotFoundError(msg)


class AACLIP(MedCLIPModuleMixin, AnomalibModule):
    """AA-CLIP zero-shot anomaly detection and segmentation.

    Args:
        backbone: open_clip architecture; the original uses OpenAI ``"ViT-L-14-336"``.
        pretrained: open_clip tag, local weights file, or ``None`` for seeded random weights (tests only).
        image_size: input size (the original: 518); ``None`` keeps the native size.
        activation: ``"original"`` = the architecture config's (the original builds ``CLIP(**config)``: GELU for
            ViT-L-14-336 even with OpenAI weights), or ``"auto"``, ``"gelu"``, ``"quick_gelu"``.
        pos_embed_mode: positional-embedding resize kernel (the original: bicubic with antialias).
        seed: seed of a random backbone and of the adapters' initialisation.
        object_name: object phrase of the prompts; ``None`` takes the datamodule's (the original says ``"scan"``).
        levels, image_adapt_until, text_adapt_until, image_adapt_weight, text_adapt_weight, proj_relu, teacher_from,
            teacher_batch_mixing, smoothing_kernel, smoothing_sigma: see :class:`AACLIPModel`.
        text_epochs, image_epochs: epochs of stage 1 and stage 2 (5 and 20).
        text_lr, image_lr: Adam learning rates of the stages (1e-5 and 5e-4).
        text_norm_weight: weight of the anchors' orthogonality term (0.1).
        lr_milestones, lr_gamma: stage-2 steps at which its learning rate is multiplied by ``lr_gamma``.
        official_checkpoint: the original's ``image_adapter*.pth``; given, the model is not trained.
        official_text_checkpoint: the original's ``text_adapter.pth`` (default: the one beside ``official_checkpoint``).
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
        volume_evaluator: the 3D evaluation of volumes (``True`` = default settings, ``False`` = off).
    """

    def __init__(
        self,
        backbone: str = "ViT-L-14-336",
        pretrained: str | Path | None = "openai",
        image_size: int | None = 518,
        activation: Activation | Literal["original"] = "original",
        pos_embed_mode: PosEmbedMode = "bicubic-antialias",
        seed: int = 0,
        object_name: str | None = None,
        levels: Sequence[int] | None = None,
        image_adapt_until: int | None = None,
        text_adapt_until: int | None = None,
        image_adapt_weight: float = 0.1,
        text_adapt_weight: float = 0.1,
        proj_relu: bool = False,
        teacher_from: int | None = None,
        teacher_batch_mixing: bool = False,
        smoothing_kernel: int = 9,
        smoothing_sigma: float = 1.5,
        text_epochs: int = 5,
        image_epochs: int = 20,
        text_lr: float = 1e-5,
        image_lr: float = 5e-4,
        text_norm_weight: float = 0.1,
        lr_milestones: Sequence[int] = (16000, 32000),
        lr_gamma: float = 0.5,
        official_checkpoint: str | Path | None = None,
        official_text_checkpoint: str | Path | None = None,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
        volume_evaluator: VolumeEvaluator | bool = True,
    ) -> None:
        if text_epochs < 0 or image_epochs < 0:
            msg = f"text_epochs and image_epochs must be >= 0, got {text_epochs} and {image_epochs}."
            raise ValueError(msg)
        super().__init__(
            backbone=backbone, pretrained=pretrained, image_size=image_size, pos_embed_mode=pos_embed_mode, seed=seed,
            activation=config_activation(backbone) if activation == "original" else activation,
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer,
            volume_evaluator=volume_evaluator,
        )  # fmt: skip
        text_file = None
        if official_checkpoint is not None:
            text_file = _text_checkpoint(official_checkpoint, official_text_checkpoint, text_epochs)
        adapt_text = text_file is not None if official_checkpoint is not None else text_epochs > 0
        self.model = self.build_model(
            lambda clip: AACLIPModel(
                clip, levels=levels, image_adapt_until=image_adapt_until, text_adapt_until=text_adapt_until,
                image_adapt_weight=image_adapt_weight, text_adapt_weight=text_adapt_weight, proj_relu=proj_relu,
                adapt_text=adapt_text, teacher_from=teacher_from, teacher_batch_mixing=teacher_batch_mixing,
                smoothing_kernel=smoothing_kernel, smoothing_sigma=smoothing_sigma,
            )
        )  # fmt: skip
        if official_checkpoint is not None:
            self.model.load_official_checkpoint(official_checkpoint, text_file)
        self.object_name = object_name
        self.map_loss = MapLoss.reference(normal_dice=True, focal_smoothing=1e-5)  # saturated 100*cos maps
        self.official_checkpoint = official_checkpoint
        self.text_epochs, self.image_epochs = text_epochs, image_epochs
        self.text_lr, self.image_lr, self.text_norm_weight = text_lr, image_lr, text_norm_weight
        self.lr_milestones, self.lr_gamma = sorted(lr_milestones), lr_gamma
        self.image_steps = 0  # stage-2 steps taken: the clock of its learning-rate milestones

    @property
    def is_trainable(self) -> bool:
        """Unless the original's released adapters are loaded (``official_checkpoint``) or no epoch is asked for."""
        return self.official_checkpoint is None and self.text_epochs + self.image_epochs > 0

    @property
    def stage(self) -> int:
        """The training stage of the current epoch: 1 (text anchors) for the first ``text_epochs``, then 2."""
        return 1 if self.current_epoch < self.text_epochs else 2

    def on_fit_start(self) -> None:
        """The mixin's check of the training split; warn when the epochs differ from the original's schedule."""
        super().on_fit_start()
        total = self.text_epochs + self.image_epochs
        if self.trainer.max_epochs != total:
            logger.warning(
                "AACLIP trains %d text epochs then %d image epochs (%d in all), but max_epochs=%s: set "
                "--trainer.max_epochs %d to train as the original.",
                self.text_epochs, self.image_epochs, total, self.trainer.max_epochs, total,
            )  # fmt: skip

    def on_train_epoch_start(self) -> None:
        """Make the current stage's adapters the trainable ones."""
        self.model.set_stage(self.stage)

    def text_stage_loss(self, batch: Batch) -> torch.Tensor:
        """Stage 1: map loss of the teacher's last level against the anchors, plus their orthogonality term."""
        probs, text = self.model.text_stage_outputs(batch.image)
        return self.map_loss(probs, batch.gt_mask) + self.text_norm_weight * (text[0] @ text[1]) ** 2

    def image_stage_loss(self, batch: Batch) -> torch.Tensor:
        """Stage 2: cross-entropy of the detection logits plus the map loss summed over levels (if masks)."""
        logits, probs = self.model.image_stage_outputs(batch.image)
        loss = F.cross_entropy(logits, batch.gt_label.long())
        map_loss = self.layer_map_loss(probs, batch)
        return loss if map_loss is None else loss + map_loss

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        """The loss of the current stage; a stage-1 batch without masks is skipped (its loss is all masks)."""
        del args, kwargs
        stage = self.stage
        if stage == 1 and batch.gt_mask is None:
            if not getattr(self, "_warned_no_mask", False):
                logger.warning("AACLIP stage 1 learns from masks only: training batches without masks are skipped.")
                self._warned_no_mask = True
            return None
        loss = self.text_stage_loss(batch) if stage == 1 else self.image_stage_loss(batch)
        self.image_steps += stage == 2
        self.log_train_loss(loss, batch_size=len(batch.image))
        self.log("train_stage", float(stage), batch_size=len(batch.image))
        return loss

    def configure_optimizers(self) -> dict[str, Any] | None:
        """Adam with a text group (lr 1e-5) and an image group (lr 5e-4, halved after 16000 and 32000 image steps).

        Equal to the original's two Adams: Adam keeps its state per parameter and skips parameters without a gradient,
        and the other stage's adapters are frozen (``set_stage``), so each step updates one stage's adapters only.
        """
        if not self.is_trainable:
            return None
        optimizer = torch.optim.Adam(
            [
                {"params": list(self.model.text_adapter.parameters()), "lr": self.text_lr},
                {"params": list(self.model.image_adapter.parameters()), "lr": self.image_lr},
            ],
            betas=(0.5, 0.999),
        )
        image_factor = lambda _: self.lr_gamma ** bisect_right(self.lr_milestones, self.image_steps)  # noqa: E731
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda _: 1.0, image_factor])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The mixin's slim checkpoint, plus the count of stage-2 steps (the learning-rate schedule's clock)."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["aa_clip_image_steps"] = self.image_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The mixin's checks, then the count of stage-2 steps."""
        super().on_load_checkpoint(checkpoint)
        self.image_steps = int(checkpoint.get("aa_clip_image_steps", 0))
