# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnoVL: training-free zero-shot anomaly localisation with value-wise attention and domain-aware prompts.

Nothing is trained (``LearningType.ZERO_SHOT``): ``anomalib train`` validates (thresholds and normalisation from the
validation split) and tests. With ``tta_steps > 0`` (the original's scripts: 5) each image's map comes from a small
adapter fitted at test time on that image's own tokens, inside the test step.

Example:
    >>> model = AnoVL(backbone="ViT-B-16-plus-240", pretrained="laion400m_e32", image_size=240)  # doctest: +SKIP
    >>> Engine().train(model, datamodule=DemoBraTS())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from torch import nn

from anomalib_medclip.backbones import Activation, PosEmbedMode
from anomalib_medclip.models.ano_vl.torch_model import AnoVLModel
from anomalib_medclip.models.components import MedCLIPModuleMixin
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["AnoVL"]


class AnoVL(MedCLIPModuleMixin, AnomalibModule):
    """AnoVL zero-shot anomaly detection and localisation, with optional test-time adaptation.

    Args:
        backbone: open_clip architecture; the original's scripts use ``"ViT-B-16-plus-240"``.
        pretrained: open_clip tag (the scripts: ``"laion400m_e32"``), local weights file, or ``None`` for seeded
            random weights (tests only).
        image_size: input size (the scripts: 240); ``None`` keeps the native size.
        activation: ``"auto"`` (what the weights were trained with; ``nn.GELU`` for LAION weights, as the original).
        pos_embed_mode: positional-embedding resize kernel (the original: bicubic with antialias).
        seed: seed of a random backbone.
        object_name: object phrase of the prompts; ``None`` takes the datamodule's.
        domains: domain phrases of the prompt templates (``None``: the original's industrial ones; e.g.
            ``["medical image", "MRI scan", "radiology image"]`` for medical wording).
        vv_from: first layer of the value-value stream (``None``: the last 12 blocks).
        augmented_score: average the image score over 21 augmented views too (the original; 22x the image passes).
        tta_steps, tta_lr, tta_noise_std, tta_seed: test-time adaptation (5 steps, AdamW 1e-3, noise 0.055, seed 0).
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
        volume_evaluator: the 3D evaluation of volumes (``True`` = default settings, ``False`` = off).
    """

    def __init__(
        self,
        backbone: str = "ViT-B-16-plus-240",
        pretrained: str | Path | None = "laion400m_e32",
        image_size: int | None = 240,
        activation: Activation = "auto",
        pos_embed_mode: PosEmbedMode = "bicubic-antialias",
        seed: int = 0,
        object_name: str | None = None,
        domains: Sequence[str] | None = None,
        vv_from: int | None = None,
        augmented_score: bool = True,
        tta_steps: int = 5,
        tta_lr: float = 1e-3,
        tta_noise_std: float = 0.055,
        tta_seed: int = 0,
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
            lambda clip: AnoVLModel(
                clip, domains=domains, vv_from=vv_from, augmented_score=augmented_score, tta_steps=tta_steps,
                tta_lr=tta_lr, tta_noise_std=tta_noise_std, tta_seed=tta_seed,
            )
        )  # fmt: skip
        self.object_name = object_name

    @property
    def is_trainable(self) -> bool:
        """Never: training-free (the test-time adapter is fitted per image inside the test step)."""
        return False

    def to_onnx(self, *args: Any, **kwargs: Any) -> Path:
        """ONNX (and OpenVINO) export of the zero-shot path only: test-time adaptation is an optimiser loop per image.

        The torch export (``to_torch``) keeps the adaptation, as it runs the model's own code.
        """
        if self.model.tta_steps:
            msg = (
                f"AnoVL's test-time adaptation (tta_steps={self.model.tta_steps}) runs AdamW inside forward and cannot "
                "be a static ONNX/OpenVINO graph: build the model with `tta_steps=0` (e.g. `--model.tta_steps 0`) "
                "to export its zero-shot path, or use `--export_type torch`, which keeps the adaptation."
            )
            raise ValueError(msg)
        return super().to_onnx(*args, **kwargs)

    def configure_optimizers(self) -> None:
        """Nothing is trained (the test-time adapter has its own optimiser, per batch)."""
