# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Plain CLIP baselines (zero-shot and last-layers fine-tuning)."""

from anomalib_medclip.models.vanilla_clip.lightning_model import VanillaCLIP
from anomalib_medclip.models.vanilla_clip.torch_model import VanillaCLIPModel

__all__ = ["VanillaCLIP", "VanillaCLIPModel"]
