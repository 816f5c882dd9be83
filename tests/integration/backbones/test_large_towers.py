# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The layer-wise towers of a large architecture (24 layers, quick GELU, 336 px) equal open_clip's encoders.

Not an Engine run, but too heavy for the unit lane (about 2 minutes and 2 GB on 2 CPU cores); the same check on
ViT-B-16 and the tiny test architecture is in ``tests/unit/backbones/test_clip.py``.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["ViT-L-14-336-quickgelu"])
def test_layerwise_towers_equal_open_clip_encoders(name: str, check_towers) -> None:
    check_towers(name)
