# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP (ICLR 2024): object-agnostic learned prompts and a value-value attention path (DPAM)."""

from anomalib_medclip.models.anomaly_clip.lightning_model import AnomalyCLIP
from anomalib_medclip.models.anomaly_clip.torch_model import AnomalyCLIPModel

__all__ = ["AnomalyCLIP", "AnomalyCLIPModel"]
