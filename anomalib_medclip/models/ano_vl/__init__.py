# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnoVL (2023): training-free value-wise attention maps, domain-aware state prompts, test-time adaptation."""

from anomalib_medclip.models.ano_vl.lightning_model import AnoVL
from anomalib_medclip.models.ano_vl.torch_model import AnoVLModel

__all__ = ["AnoVL", "AnoVLModel"]
