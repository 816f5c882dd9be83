# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Parts shared by several models: the model contract, slim checkpoints, anomaly-map helpers, losses."""

from anomalib_medclip.models.components.anomaly_map import (
    GaussianSmoothing,
    layer_maps_to_image,
    quarter_layers,
    upsample_patch_values,
)
from anomalib_medclip.models.components.checkpoint import SlimCheckpointMixin
from anomalib_medclip.models.components.module import MedCLIPModuleMixin
from anomalib_medclip.models.components.text import PromptedModel

__all__ = [
    "GaussianSmoothing",
    "MedCLIPModuleMixin",
    "PromptedModel",
    "SlimCheckpointMixin",
    "layer_maps_to_image",
    "quarter_layers",
    "upsample_patch_values",
]
