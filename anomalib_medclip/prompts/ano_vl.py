# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnoVL's domain-aware prompt wording: 7 normal and 7 anomalous state phrases x 22 patterns x 3 domain phrases."""

from __future__ import annotations

from collections.abc import Sequence

from anomalib_medclip.prompts.templates import check_object_name, indefinite_article

__all__ = ["OBJECT_DOMAINS", "TEXTURES", "TEXTURE_DOMAINS", "domain_sentences"]

_NORMAL_STATES = ("normal {}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                  "{} without damage")  # fmt: skip
_ANOMALOUS_STATES = ("damaged {}", "abnormal {}", "imperfect {}", "blemished {}", "{} with flaw", "{} with defect",
                     "{} with damage")  # fmt: skip
_PATTERNS = (  # {a} {d}: the domain phrase with its article; {{}}: the state phrase
    *(f"a {quality} {{d}} of {article} {{{{}}}}" for quality, articles in (
        ("cropped", ("the", "a")), ("close-up", ("a", "the")), ("bright", ("a", "the")), ("dark", ("the", "a")),
        ("jpeg corrupted", ("a", "the")), ("blurry", ("the", "a"))) for article in articles),
    "{a} {d} of a {{}}", "{a} {d} of the {{}}", "{a} {d} of a small {{}}", "{a} {d} of the small {{}}",
    "{a} {d} of a large {{}}", "{a} {d} of the large {{}}", "{a} {d} of the {{}} for visual inspection",
    "{a} {d} of a {{}} for visual inspection", "{a} {d} of the {{}} for anomaly detection",
    "{a} {d} of a {{}} for anomaly detection",
)  # fmt: skip
OBJECT_DOMAINS = ("industrial photo", "industrial image", "manufacturing image")
TEXTURE_DOMAINS = ("industrial photo", "textural photo", "surface picture")
TEXTURES = frozenset({"carpet", "leather", "grid", "tile", "wood"})


def domain_sentences(object_name: str, domains: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The 462 normal and 462 anomalous sentences (template-major, as the original orders them).

    Args:
        object_name: what the images show.
        domains: domain phrases of the templates (``None``: the original's, textures for MVTec's five textures).
    """
    check_object_name(object_name)
    if domains is None:
        domains = TEXTURE_DOMAINS if object_name in TEXTURES else OBJECT_DOMAINS
    templates = [pattern.format(a=indefinite_article(d), d=d) for d in domains for pattern in _PATTERNS]

    def expand(states: tuple[str, ...]) -> list[str]:
        return [template.format(state.format(object_name)) for template in templates for state in states]

    return expand(_NORMAL_STATES), expand(_ANOMALOUS_STATES)
