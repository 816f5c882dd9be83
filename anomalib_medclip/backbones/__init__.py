# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The shared CLIP backbone: weight loading and layer-wise towers."""

from anomalib_medclip.backbones.clip import (
    BlockHook,
    CLIPBackbone,
    PosEmbedMode,
    VisualFeatures,
    resize_positional_embedding,
)
from anomalib_medclip.backbones.loading import (
    TINY_TEST_BACKBONE,
    Activation,
    ClipInfo,
    WeightsUnavailableError,
    config_activation,
    config_patch_size,
    create_clip,
    native_image_size,
    openai_weights_evidence,
)

__all__ = [
    "TINY_TEST_BACKBONE",
    "Activation",
    "BlockHook",
    "CLIPBackbone",
    "ClipInfo",
    "PosEmbedMode",
    "VisualFeatures",
    "WeightsUnavailableError",
    "config_activation",
    "config_patch_size",
    "create_clip",
    "native_image_size",
    "openai_weights_evidence",
    "resize_positional_embedding",
]
