# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Bi-directional cross-modal prompt learning (B_t, B_v, B_vt) on CLIP."""

from anomalib_medclip.models.cross_modal_clip.lightning_model import MedCrossModalCLIP
from anomalib_medclip.models.cross_modal_clip.torch_model import MedCrossModalCLIPModel

__all__ = ["MedCrossModalCLIP", "MedCrossModalCLIPModel"]
