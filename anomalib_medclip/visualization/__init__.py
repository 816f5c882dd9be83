# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Visualisation of volume slices."""

from anomalib_medclip.visualization.slices import SliceVisualizer

__all__ = ["SliceVisualizer"]
