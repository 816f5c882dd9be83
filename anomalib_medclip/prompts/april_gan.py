# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""APRIL-GAN's prompt ensemble: 7 normal and 5 abnormal state phrases x 35 templates (the original's wording)."""

from __future__ import annotations

from anomalib_medclip.prompts.templates import check_object_name

__all__ = ["ensemble_sentences"]

_QUALITIES = (
    "bad", "low resolution", "cropped", "bright", "dark", "close-up", "black and white", "jpeg corrupted",
    "blurry", "good",
)  # fmt: skip
_TEMPLATES: tuple[str, ...] = (
    *(f"a {quality} photo of {article} {{}}." for quality in _QUALITIES for article in ("a", "the")),
    *(f"a photo of {determiner} {{}}." for determiner in ("a", "the", "my", "one")),
    *(f"a photo of {article} {size} {{}}." for article in ("a", "the") for size in ("cool", "large", "small")),
    *(f"there is {article} {{}} in the scene." for article in ("a", "the")),
    *(f"this is {determiner} {{}} in the scene." for determiner in ("a", "the", "one")),
)
_NORMAL_STATES = (
    "{}",
    *(f"{word} {{}}" for word in ("flawless", "perfect", "unblemished")),
    *(f"{{}} without {word}" for word in ("flaw", "defect", "damage")),
)
_ABNORMAL_STATES = (
    *(f"{word} {{}}" for word in ("damaged", "broken")),
    *(f"{{}} with {word}" for word in ("flaw", "defect", "damage")),
)


def ensemble_sentences(object_name: str) -> tuple[list[str], list[str]]:
    """The 245 normal and 175 abnormal sentences of the APRIL-GAN prompt ensemble for ``object_name``."""
    check_object_name(object_name)

    def expand(states: tuple[str, ...]) -> list[str]:
        return [template.format(state.format(object_name)) for state in states for template in _TEMPLATES]

    return expand(_NORMAL_STATES), expand(_ABNORMAL_STATES)
