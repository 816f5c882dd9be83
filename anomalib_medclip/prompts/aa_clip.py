# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AA-CLIP's prompts: 3 normal and 5 abnormal state phrases x 2 templates (the original's wording).

The original names medical objects ``"scan"`` (its ``REAL_NAMES``); here the phrase is the datamodule's object name
(e.g. ``"brain MRI scan"``) unless the model is given ``object_name``.
"""

from __future__ import annotations

from anomalib_medclip.prompts.templates import check_object_name

__all__ = ["aa_clip_sentences"]

_NORMAL_STATES = ("{}", "a {}", "the {}")
_ABNORMAL_STATES = ("a damaged {}", "a broken {}", "a {} with flaw", "a {} with defect", "a {} with damage")
_TEMPLATES = ("{}.", "a photo of {}.")


def aa_clip_sentences(object_name: str) -> tuple[list[str], list[str]]:
    """The 6 normal and 10 abnormal sentences for ``object_name``, in the original's order (state, then template).

    Example:
        >>> normal, abnormal = aa_clip_sentences("scan")
        >>> normal[:3], abnormal[-1]
        (['scan.', 'a photo of scan.', 'a scan.'], 'a photo of a scan with damage.')
    """
    check_object_name(object_name)

    def expand(states: tuple[str, ...]) -> list[str]:
        return [template.format(state.format(object_name)) for state in states for template in _TEMPLATES]

    return expand(_NORMAL_STATES), expand(_ABNORMAL_STATES)
