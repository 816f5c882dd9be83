# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AA-CLIP: anomaly-aware text anchors and visual residual adapters, trained in two stages."""

from anomalib_medclip.models.aa_clip.lightning_model import AACLIP

__all__ = ["AACLIP"]
