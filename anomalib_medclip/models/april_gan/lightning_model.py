# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AprilGAN (the BraTS study's "VAND"): CLIP with linear patch adapters, zero-shot and few-shot (memory bank).

- Without ``official_checkpoint`` the adapters are trained (focal + Dice on the abnormal channel, summed over
  layers; Adam lr 1e-3, betas (0.5, 0.999)) on the datamodule's labelled training split with masks, the original's
  auxiliary-data protocol. anomalib only calls ``fit`` for ``LearningType.ONE_CLASS``, so that is what it reports.
- With ``official_checkpoint`` (the original's ``{"trainable_linearlayer": ...}`` files) nothing is trained:
  ZERO_SHOT, or FEW_SHOT when ``k_shot > 0``.
- ``k_shot > 0``: k normal images of the datamodule's training split (seeded draw) fill the memory bank before
  validation/test/predict; the image score is fused with the max of the map, min-max normalised over the
  validation split (computed in an extra pass over it at the start of each validation).

``VAND`` is the same class under the study's name (``--model VAND``).

Example:
    >>> model = AprilGAN(official_checkpoint="exps/pretrained/mvtec_pretrained.pth", k_shot=4)  # doctest: +SKIP
    >>> Engine().test(model, datamodule=DemoBraTS())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import nn

from anomalib_medclip.backbones import Activation, PosEmbedMode
from anomalib_medclip.models.april_gan.torch_model import AprilGANModel
from anomalib_medclip.models.components import MedCLIPModuleMixin, quarter_layers
from anomalib_medclip.models.components.losses import MapLoss
from anomalib_medclip.models.components.official import original_activation
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["VAND", "AprilGAN", "original_activation"]

logger = logging.getLogger(__name__)


class AprilGAN(MedCLIPModuleMixin, AnomalibModule):
    """APRIL-GAN / VAND zero- and few-shot anomaly detection and segmentation.

    Args:
        backbone: open_clip architecture; the original's scripts use ``"ViT-L-14-336"``.
        pretrained: open_clip tag, local weights file, or ``None`` for seeded random weights (tests only).
        image_size: input size (the scripts use 518); ``None`` keeps the native size.
        activation: ``"original"`` (the original's choice, see :func:`original_activation`), ``"auto"``,
            ``"gelu"`` or ``"quick_gelu"``.
        pos_embed_mode: positional-embedding resize kernel (the original: bicubic with antialias).
        seed: seed of a random backbone and of the adapters' initialisation.
        object_name: object phrase of the prompts; ``None`` takes the datamodule's.
        layers: 1-indexed layers with adapters (``None`` = quarters of the tower: 6/12/18/24 for ViT-L).
        k_shot: normal reference images of the memory bank (0 = zero-shot).
        few_shot_layers: layers of the memory bank (``None`` = ``layers``).
        reference_seed: seed of the draw of the reference images.
        fuse_image_score: in few-shot mode, fuse the image score with the normalised max of the map (original).
        smoothing_sigma: Gaussian sigma of the map (the original does not smooth: 0).
        official_checkpoint: the original's adapter file; given, the model is not trained.
        lr: Adam learning rate of the adapters.
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
        layers: Sequence[int] | None = None,
        k_shot: int = 0,
        few_shot_layers: Sequence[int] | None = None,
        reference_seed: int = 42,
        fuse_image_score: bool = True,
        smoothing_sigma: float = 0.0,
        official_checkpoint: str | Path | None = None,
        lr: float = 1e-3,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
        volume_evaluator: VolumeEvaluator | bool = True,
    ) -> None:
        if k_shot < 0:
            msg = f"k_shot must be >= 0, got {k_shot}."
            raise ValueError(msg)
        if activation == "original":
            activation = original_activation(backbone, pretrained, image_size)
        super().__init__(
            backbone=backbone, pretrained=pretrained, image_size=image_size, pos_embed_mode=pos_embed_mode, seed=seed,
            activation=activation,
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer,
            volume_evaluator=volume_evaluator,
        )  # fmt: skip
        self.model = self.build_model(
            lambda clip: AprilGANModel(
                clip,
                tuple(layers) if layers is not None else quarter_layers(clip.visual_depth),
                few_shot_layers,
                smoothing_sigma=smoothing_sigma,
            )
        )
        if official_checkpoint is not None:
            self.model.load_official_checkpoint(official_checkpoint)
        self.object_name = object_name
        self.map_loss = MapLoss.reference(normal_dice=False)
        self._mask_batches = 0  # training batches with masks in the current epoch
        self.official_checkpoint = official_checkpoint
        self.k_shot, self.reference_seed, self.fuse_image_score = k_shot, reference_seed, fuse_image_score
        self.lr = lr

    @property
    def is_trainable(self) -> bool:
        """Unless the original's released adapters are loaded (``official_checkpoint``): then zero- or few-shot."""
        return self.official_checkpoint is None

    @property
    def learning_type(self) -> LearningType:
        """ONE_CLASS (= trainable, so anomalib calls ``fit``) without an official checkpoint; else zero/few-shot."""
        if self.is_trainable:
            return LearningType.ONE_CLASS
        return LearningType.FEW_SHOT if self.k_shot else LearningType.ZERO_SHOT

    # ------------------------------------------------------------------ few-shot set-up
    def prepare_few_shot(self) -> None:
        """With ``k_shot > 0``: the memory bank of the reference images (once; a checkpoint restores it)."""
        if self.k_shot and not self.model.few_shot:
            self.model.setup_memory(self.reference_images())

    def _transform(self, images: torch.Tensor) -> torch.Tensor:
        """What the pre-processor does to batches in the loops (images read outside them bypass it)."""
        transform = getattr(self.pre_processor, "transform", None)
        return transform(images) if transform is not None else images

    def reference_images(self) -> torch.Tensor:
        """``k_shot`` normal images of the datamodule's training split, drawn with ``reference_seed``."""
        datamodule = getattr(self.trainer, "datamodule", None)
        dataset = getattr(datamodule, "train_data", None)
        if dataset is None:
            msg = "k_shot > 0 needs a datamodule with a training split to draw normal reference images from."
            raise ValueError(msg)
        normal = torch.from_numpy(np.flatnonzero(dataset.samples["label_index"].to_numpy() == 0))
        if len(normal) < self.k_shot:
            msg = f"k_shot={self.k_shot}, but the training split has only {len(normal)} normal images."
            raise ValueError(msg)
        generator = torch.Generator().manual_seed(self.reference_seed)
        chosen = normal[torch.randperm(len(normal), generator=generator)[: self.k_shot]].sort().values
        images = [self._transform(dataset[int(index)].image.unsqueeze(0).to(self.device)) for index in chosen]
        return torch.cat(images)

    def calibrate_score_fusion(self, loaders: Iterable | torch.utils.data.DataLoader) -> None:
        """Set the few-shot score fusion's range: min and max of the per-image max map over ``loaders``.

        Runs as an extra pass over the validation split at the start of each validation (logged), because the
        thresholds anomalib learns in that validation must see the fused scores.
        """
        loaders = [loaders] if isinstance(loaders, torch.utils.data.DataLoader) else list(loaders)
        self.model.score_range = torch.empty(0, device=self.device)  # unfused while calibrating
        maxima = []
        with torch.no_grad():
            for loader in loaders:
                for batch in loader:
                    images = self._transform(batch.image.to(self.device))
                    maxima.append(self.model(images).anomaly_map.amax(dim=(1, 2, 3)))
        self.model.set_score_range(torch.cat(maxima))
        logger.info(
            "AprilGAN few-shot: score-fusion range from %d validation images (extra pass).", sum(map(len, maxima))
        )

    def on_validation_start(self) -> None:
        """Memory bank, then the score-fusion range on the validation split (the adapters may have changed)."""
        self.prepare_few_shot()
        if self.k_shot and self.fuse_image_score:
            self.calibrate_score_fusion(self.trainer.val_dataloaders)

    def on_test_start(self) -> None:
        """Memory bank (unless restored from the checkpoint); warn when the score fusion has no range."""
        self.prepare_few_shot()
        if self.k_shot and self.fuse_image_score and not self.model.score_range.numel():
            logger.warning("No validation range for the few-shot score fusion: image scores are zero-shot only.")

    def on_predict_start(self) -> None:
        """Memory bank (unless restored from the checkpoint)."""
        self.prepare_few_shot()

    # ------------------------------------------------------------------ steps
    def on_train_epoch_start(self) -> None:
        """Count the epoch's batches with masks (the adapters only learn from those)."""
        self._mask_batches = 0

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        """Sum over layers of focal + Dice (abnormal channel) against the masks; a batch without masks is skipped.

        The original trains on segmentation data only; MVFA's zero-shot split mixes in classification categories,
        whose batches carry no masks (``layer_map_loss`` warns once) and so train nothing here.
        """
        del args, kwargs
        if batch.gt_mask is None:
            if not getattr(self, "_warned_no_mask", False):
                logger.warning("AprilGAN: training batches without masks are skipped (its adapters learn from masks).")
                self._warned_no_mask = True
            return None
        loss = self.layer_map_loss(self.model.forward_train(batch.image), batch)
        self._mask_batches += 1
        self.log_train_loss(loss, batch_size=len(batch.image))
        return loss

    def on_train_epoch_end(self) -> None:
        """Refuse an epoch that trained nothing: the training split has no masks at all."""
        if self._mask_batches == 0:
            msg = (
                "AprilGAN trains its adapters on masks, but no training batch of this epoch had any (gt_mask is "
                "None): use a segmentation dataset, or official_checkpoint=... / k_shot without training."
            )
            raise ValueError(msg)

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        """Adam over the adapters only (betas of the original); nothing to train with an official checkpoint."""
        if not self.is_trainable:
            return None
        return torch.optim.Adam(self.model.fc.parameters(), lr=self.lr, betas=(0.5, 0.999))


class VAND(AprilGAN, AnomalibModule):
    """``AprilGAN`` under the BraTS study's name, so that ``--model VAND`` and ``get_model("VAND")`` work.

    Naming ``AnomalibModule`` again makes it a *direct* subclass, which anomalib's ``get_model`` requires; the
    method resolution order is unchanged (``AprilGAN`` first), so nothing is duplicated.
    """
