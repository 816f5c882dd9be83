# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MedCrossModalCLIP's prompt wording: one sentence per state, whose context words B_t conditions on the image.

Example:
    >>> cross_modal_sentences("brain MRI scan")
    ('a photo of a normal brain MRI scan', 'a photo of a anomalous brain MRI scan')
"""

from __future__ import annotations

from anomalib_medclip.prompts.templates import check_object_name

__all__ = ["STATES", "TEMPLATE", "cross_modal_sentences"]

TEMPLATE = "a photo of a {state} {obj}"
"""The cross-modal template: its 4 context words after SOS ("a photo of a") are what B_t conditions."""
STATES = ("normal", "anomalous")


def cross_modal_sentences(object_name: str) -> tuple[str, str]:
    """The normal and the anomalous sentence for ``object_name`` (the article stays "a": it is a context word)."""
    check_object_name(object_name)
    return tuple(TEMPLATE.format(state=state, obj=object_name) for state in STATES)
