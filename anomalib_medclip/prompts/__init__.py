# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Prompt templates and state words shared by the models."""

from anomalib_medclip.prompts.templates import (
    ANOMALOUS_STATES,
    DEFAULT_OBJECT,
    ENSEMBLE_TEMPLATES,
    NORMAL_STATES,
    indefinite_article,
    state_prompts,
)

__all__ = [
    "ANOMALOUS_STATES",
    "DEFAULT_OBJECT",
    "ENSEMBLE_TEMPLATES",
    "NORMAL_STATES",
    "indefinite_article",
    "state_prompts",
]
