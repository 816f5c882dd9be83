# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Shared prompt helpers and VanillaCLIP's normal/anomalous sentences for CLIP zero-shot scoring.

The plain prompts are the cross-modal paper's baseline: ``"a photo of a normal {obj}"`` and
``"a photo of an anomalous {obj}"``. The optional ensemble crosses a few medical state words with generic photo
templates (WinCLIP-style); features of an ensemble are averaged per state.

Example:
    >>> normal, anomalous = state_prompts("brain MRI scan")
    >>> normal, anomalous
    (('a photo of a normal brain MRI scan',), ('a photo of an anomalous brain MRI scan',))
    >>> len(state_prompts("brain MRI scan", ensemble=True)[0])
    20
"""

from __future__ import annotations

import re

__all__ = [
    "ANOMALOUS_STATES",
    "DEFAULT_OBJECT",
    "ENSEMBLE_TEMPLATES",
    "NORMAL_STATES",
    "check_object_name",
    "indefinite_article",
    "state_prompts",
]

DEFAULT_OBJECT = "object"

NORMAL_STATES: tuple[str, ...] = ("normal {}", "healthy {}", "{} without abnormality", "unremarkable {}")
ANOMALOUS_STATES: tuple[str, ...] = ("anomalous {}", "abnormal {}", "{} with a lesion", "{} with a tumor")
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a medical image of a {}.",
    "a scan showing a {}.",
)


def check_object_name(object_name: str) -> str:
    """``object_name`` itself when it is a non-empty phrase; else a ``ValueError`` saying what is expected."""
    if not isinstance(object_name, str) or not object_name.strip():
        msg = f"object_name must be a non-empty phrase such as 'brain MRI scan', got {object_name!r}."
        raise ValueError(msg)
    return object_name


def indefinite_article(phrase: str) -> str:
    """``"a"`` or ``"an"`` before ``phrase``, initialisms included: ``"an MRI scan"``, ``"an X-ray"``, ``"a CT"``."""
    head = re.split(r"[\s-]", phrase.strip(), maxsplit=1)[0]
    if head.isupper():
        return "an" if head[:1] in "AEFHILMNORSX" else "a"
    return "an" if head[:1].lower() in "aeiou" else "a"


def state_prompts(object_name: str, *, ensemble: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Normal and anomalous sentences for ``object_name``.

    Args:
        object_name: what the images show, e.g. ``"brain MRI scan"``.
        ensemble: return the state-word x template ensemble instead of the single baseline sentence each.

    Returns:
        ``(normal_sentences, anomalous_sentences)``.
    """
    check_object_name(object_name)
    if not ensemble:
        normal, anomalous = f"normal {object_name}", f"anomalous {object_name}"
        article, anomalous_article = indefinite_article(normal), indefinite_article(anomalous)
        return (f"a photo of {article} {normal}",), (f"a photo of {anomalous_article} {anomalous}",)

    def expand(states: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(template.format(state.format(object_name)) for state in states for template in ENSEMBLE_TEMPLATES)

    return expand(NORMAL_STATES), expand(ANOMALOUS_STATES)
