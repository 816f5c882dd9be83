# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Helpers shared across the package that belong to no single part: atomic writes, run descriptions."""

from anomalib_medclip.utils.describe import Describable, describe, jsonable
from anomalib_medclip.utils.io import claim_output_dir, write_atomic

__all__ = ["Describable", "claim_output_dir", "describe", "jsonable", "write_atomic"]
