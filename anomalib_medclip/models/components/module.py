# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""What every CLIP model of the package shares on the Lightning side.

- :meth:`MedCLIPModuleMixin.clip_pre_processor`: resize to the backbone's input size and normalise with the
  statistics of its weights (read from open_clip's preprocess config, not from literals).
- the object phrase of the prompts: the model's ``object_name`` if given, else the datamodule's ``object_name``
  (e.g. ``"brain MRI scan"`` for BraTS), else ``"object"`` with a warning.
- a default ``PostProcessor`` whatever the learning type (anomalib only gives one to ONE_CLASS models).
- a visualiser that also handles slices of volumes (:class:`SliceVisualizer`), and the 3D evaluation of volumes
  (:class:`VolumeEvaluator`: NIfTI maps, per-volume metrics, reports).
- slim checkpoints (:class:`SlimCheckpointMixin`).
- the validation step (predict; anomalib learns thresholds and normalisation from it) and no sanity validation.

Models subclass ``(MedCLIPModuleMixin, AnomalibModule)`` so that they stay direct ``AnomalibModule`` subclasses,
which anomalib's ``get_model`` requires.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from torch import nn
from torchvision.transforms.v2 import Compose, InterpolationMode, Normalize, Resize

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components.checkpoint import SlimCheckpointMixin
from anomalib_medclip.prompts import DEFAULT_OBJECT
from anomalib_medclip.visualization import SliceVisualizer
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["MedCLIPModuleMixin"]

logger = logging.getLogger(__name__)


class MedCLIPModuleMixin(SlimCheckpointMixin):
    """Shared Lightning-side behaviour of the package's CLIP models."""

    @classmethod
    def build_backbone(cls, components: dict[str, Any], **backbone_args: Any) -> tuple[CLIPBackbone, dict[str, Any]]:
        """Build the shared CLIP backbone and the anomalib components to initialise the model with.

        The backbone must exist before ``AnomalibModule.__init__`` because the pre-processor (input size,
        normalisation) depends on it and anomalib builds its components inside ``__init__``. The model then calls
        ``super().__init__(**components)`` itself: Lightning's ``save_hyperparameters`` reads the init arguments
        from the frame of the model's own ``__init__``.

        Args:
            components: ``pre_processor``, ``post_processor``, ``evaluator``, ``visualizer`` as given to the model.
            **backbone_args: ``name``, ``pretrained`` and keyword arguments of :class:`CLIPBackbone`.

        Returns:
            The backbone and the components, with the pre-processor made for the backbone.
        """
        clip = CLIPBackbone(**backbone_args)
        return clip, {**components, "pre_processor": cls.clip_pre_processor(clip, components["pre_processor"])}

    @staticmethod
    def clip_pre_processor(backbone: CLIPBackbone, pre_processor: nn.Module | bool = True) -> nn.Module | bool:
        """Resize + normalise for ``backbone`` when ``pre_processor`` is ``True``; otherwise pass it through."""
        if pre_processor is not True:
            return pre_processor
        size = backbone.image_size
        transform = Compose(
            [
                Resize((size, size), antialias=True, interpolation=InterpolationMode.BICUBIC),
                Normalize(mean=backbone.info.mean, std=backbone.info.std),
            ]
        )
        return PreProcessor(transform=transform)

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        """Normalisation and F1-adaptive thresholds learnt on the validation split."""
        return PostProcessor()

    @staticmethod
    def configure_visualizer() -> SliceVisualizer:
        """Anomalib's overlays, also for slices of volumes (whose ``image_path`` PIL cannot open)."""
        return SliceVisualizer()

    def configure_callbacks(self) -> list[Any]:
        """Anomalib's components, then the 3D evaluation (it must see post-processed batches; 2D data passes by)."""
        return [*super().configure_callbacks(), VolumeEvaluator()]

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> Batch:
        """Predict on the validation batch (thresholds and normalisation are learnt from it)."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No sanity validation (it would learn thresholds before training); epochs stay the user's choice."""
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        """ONE_CLASS (= trainable, so anomalib calls ``fit``); ZERO_SHOT with the original's ``official_checkpoint``.

        anomalib only fits ONE_CLASS models; models with other rules (zero-/few-shot modes) override this.
        """
        return LearningType.ZERO_SHOT if self.hparams.get("official_checkpoint") else LearningType.ONE_CLASS

    def learnable_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the torch model outside the frozen backbone (the method's own parts)."""
        return [p for name, p in self.model.named_parameters() if p.requires_grad and not name.startswith("backbone.")]

    def layer_map_loss(self, maps: Sequence[torch.Tensor], batch: Batch) -> torch.Tensor | None:
        """Sum over layers of ``self.map_loss(probabilities, masks)``; ``None`` (warned once) for a batch without masks.

        The reference methods train the map on masks and the image score on labels; classification-only data (BMAD's
        Chest, OCT2017, Histopathology) then trains the image term only.
        """
        if batch.gt_mask is not None:
            return torch.stack([self.map_loss(m, batch.gt_mask) for m in maps]).sum()
        if not getattr(self, "_warned_no_mask", False):
            logger.warning("%s: training batches have no masks; only the image loss is trained.", type(self).__name__)
            self._warned_no_mask = True
        return None

    def resolve_object_name(self, explicit: str | None) -> str:
        """Object phrase for the prompts: explicit argument, then the datamodule's, then ``"object"``."""
        if explicit:
            return explicit
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if name := getattr(datamodule, "object_name", None):
            return str(name)
        logger.warning("No object_name given and the datamodule has none: prompts use '%s'.", DEFAULT_OBJECT)
        return DEFAULT_OBJECT


class ObjectPromptMixin(MedCLIPModuleMixin):
    """Lightning hooks for torch models whose prompts name the object (AprilGAN, AdaCLIP, AnoVL).

    The torch model exposes ``setup_text(object_name)``, ``text_ready`` and ``object_name``. Its text is set up at the
    start of every stage, once the datamodule (and so the object phrase) is known, unless it is already there (e.g.
    restored from a checkpoint); checkpoints record the object phrase so that a reloaded model prompts the same way.
    """

    def prepare(self) -> None:
        """Stage set-up: the prompts' text for the checkpoint's, the model's or the datamodule's object phrase."""
        if not self.model.text_ready:
            self.model.setup_text(self.model.object_name or self.resolve_object_name(self.object_name))

    def on_train_start(self) -> None:
        """Set up before the first step."""
        self.prepare()

    def on_validation_start(self) -> None:
        """Set up before validation (thresholds are learnt from it)."""
        self.prepare()

    def on_test_start(self) -> None:
        """Set up before testing (unless restored from the checkpoint)."""
        self.prepare()

    def on_predict_start(self) -> None:
        """Set up before prediction (unless restored from the checkpoint)."""
        self.prepare()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also record the object phrase of the prompts."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["object_name"] = self.model.object_name

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the object phrase of the prompts."""
        super().on_load_checkpoint(checkpoint)
        self.model.object_name = checkpoint.get("object_name")
