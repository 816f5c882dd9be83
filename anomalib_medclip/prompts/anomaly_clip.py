# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP's object-agnostic prompt wording: learnable placeholder words, then "object" / "damaged object"."""

from __future__ import annotations

__all__ = ["AGNOSTIC_OBJECT", "prompt_sentences"]

AGNOSTIC_OBJECT = "object"


def prompt_sentences(n_ctx: int) -> tuple[str, str]:
    """The original's two object-agnostic sentences with ``n_ctx`` placeholder words."""
    context = " ".join(["X"] * n_ctx)
    return f"{context} {AGNOSTIC_OBJECT}.", f"{context} damaged {AGNOSTIC_OBJECT}."
