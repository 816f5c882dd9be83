# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Parts shared by several models: slim checkpoints, Lightning hooks, anomaly-map helpers."""

from anomalib_medclip.models.components.anomaly_map import GaussianSmoothing, layer_maps_to_image, upsample_patch_values
from anomalib_medclip.models.components.checkpoint import SlimCheckpointMixin
from anomalib_medclip.models.components.module import MedCLIPModuleMixin, ObjectPromptMixin

__all__ = [
    "GaussianSmoothing",
    "MedCLIPModuleMixin",
    "ObjectPromptMixin",
    "SlimCheckpointMixin",
    "layer_maps_to_image",
    "upsample_patch_values",
]
