# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP's prompt wording: 7 normal and 5 abnormal state phrases x 4 templates (the original's, kept verbatim)."""

from __future__ import annotations

from anomalib_medclip.prompts.templates import check_object_name

__all__ = ["state_sentences"]

_NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                  "{} without damage")  # fmt: skip
_ABNORMAL_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
_TEMPLATES = ("a bad photo of a {}.", "a low resolution photo of the {}.", "a bad photo of the {}.",
              "a cropped photo of the {}.")  # fmt: skip


def state_sentences(object_name: str) -> tuple[list[str], list[str]]:
    """The original's 28 normal and 20 abnormal sentences (states x templates; ``-`` in the name becomes a space)."""
    name = check_object_name(object_name).replace("-", " ")

    def expand(states: tuple[str, ...]) -> list[str]:
        return [template.format(state.format(name)) for state in states for template in _TEMPLATES]

    return expand(_NORMAL_STATES), expand(_ABNORMAL_STATES)
