# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFA: multi-level visual feature adapters (CVPR 2024), the BMAD reference method."""

from anomalib_medclip.models.mvfa.lightning_model import MVFA

__all__ = ["MVFA"]
