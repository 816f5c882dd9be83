# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP (ECCV 2024): hybrid static + dynamic learnable prompts in both CLIP towers, hybrid semantic fusion."""

from anomalib_medclip.models.ada_clip.lightning_model import AdaCLIP
from anomalib_medclip.models.ada_clip.torch_model import AdaCLIPModel

__all__ = ["AdaCLIP", "AdaCLIPModel"]
