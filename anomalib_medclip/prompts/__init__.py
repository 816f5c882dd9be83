# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Every method's prompt wording, one module per method, and the helpers they share.

- :mod:`.templates`: shared helpers (:func:`check_object_name`, :func:`indefinite_article`, the default phrase) and
  VanillaCLIP's sentences (:func:`state_prompts`);
- :mod:`.cross_modal`, :mod:`.aa_clip`, :mod:`.anomaly_clip`, :mod:`.ada_clip`, :mod:`.april_gan`, :mod:`.ano_vl`:
  the wording of MedCrossModalCLIP and of the ports (the originals' sentences, verbatim).

Nothing here imports torch: the sentences can be listed and checked without building a model.
"""

from anomalib_medclip.prompts.aa_clip import aa_clip_sentences
from anomalib_medclip.prompts.ada_clip import state_sentences
from anomalib_medclip.prompts.ano_vl import OBJECT_DOMAINS, TEXTURE_DOMAINS, TEXTURES, domain_sentences
from anomalib_medclip.prompts.anomaly_clip import AGNOSTIC_OBJECT, prompt_sentences
from anomalib_medclip.prompts.april_gan import ensemble_sentences
from anomalib_medclip.prompts.cross_modal import cross_modal_sentences
from anomalib_medclip.prompts.templates import (
    ANOMALOUS_STATES,
    DEFAULT_OBJECT,
    ENSEMBLE_TEMPLATES,
    NORMAL_STATES,
    check_object_name,
    indefinite_article,
    state_prompts,
)

__all__ = [
    "AGNOSTIC_OBJECT",
    "ANOMALOUS_STATES",
    "DEFAULT_OBJECT",
    "ENSEMBLE_TEMPLATES",
    "NORMAL_STATES",
    "OBJECT_DOMAINS",
    "TEXTURES",
    "TEXTURE_DOMAINS",
    "aa_clip_sentences",
    "check_object_name",
    "cross_modal_sentences",
    "domain_sentences",
    "ensemble_sentences",
    "indefinite_article",
    "prompt_sentences",
    "state_prompts",
    "state_sentences",
]
