# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""anomalib-medclip: CLIP-based zero-/few-shot anomaly detection for medical images, as anomalib plugins."""
