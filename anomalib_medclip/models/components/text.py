# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The text lifecycle every torch model of the package follows.

A model's prompts name what the images show (``"brain MRI scan"``), which is only known once the data is. Every torch
model therefore has the same three members:

- :meth:`PromptedModel.setup_text` ``(object_name)``: choose the object phrase and prepare what the prompts need from
  it (sentences, token ids). Cheap: no text is encoded here. Fixed sentences are encoded on first use by the shared
  backbone, which caches their features per device and dtype, so they are encoded once, on the device the model runs
  on, and never stored in checkpoints (they derive from the phrase and the frozen text tower);
- :attr:`PromptedModel.text_ready`: whether a phrase is set, i.e. whether ``forward`` can run;
- :attr:`PromptedModel.object_name`: the phrase in use (``None`` before ``setup_text``).

The Lightning side (:class:`~anomalib_medclip.models.components.MedCLIPModuleMixin`) calls ``setup_text`` in one
place for every stage and restores the phrase from checkpoints. Object-agnostic methods (AnomalyCLIP) fix their
phrase at construction and set :attr:`PromptedModel.object_agnostic`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from anomalib_medclip.backbones import CLIPBackbone

__all__ = ["PromptedModel", "ensemble_text_features"]


def ensemble_text_features(backbone: CLIPBackbone, normal: Sequence[str], abnormal: Sequence[str]) -> torch.Tensor:
    """Normal and abnormal text features ``(D, 2)`` of a fixed prompt ensemble (APRIL-GAN, MVFA).

    The backbone encodes the sentences once per device and dtype (in groups of equal length, each truncated at its
    end-of-text token: exact under CLIP's causal mask) and caches them; each state's L2-normalised features are
    averaged and normalised again.
    """
    features = backbone.encode_fixed_text([*normal, *abnormal], normalize=True)
    groups = (features[: len(normal)], features[len(normal) :])
    return torch.stack([F.normalize(group.mean(dim=0), dim=-1) for group in groups], dim=1)


class PromptedModel(nn.Module, ABC):
    """Base of the package's torch models: the text lifecycle (see the module docstring).

    Subclasses implement :meth:`_prepare_text`, store what they derive from the phrase in non-persistent buffers or
    plain attributes, and call :meth:`_require_text` before using it.
    """

    object_agnostic: ClassVar[bool] = False
    """The prompts do not name the object (their phrase is fixed at construction)."""

    def __init__(self) -> None:
        super().__init__()
        self._object_name: str | None = None

    @property
    def object_name(self) -> str | None:
        """The object phrase of the prompts; ``None`` before :meth:`setup_text`."""
        return self._object_name

    @property
    def text_ready(self) -> bool:
        """Whether the prompts are set up, i.e. whether ``forward`` can run."""
        return self._object_name is not None

    def setup_text(self, object_name: str) -> None:
        """Set up the prompts for ``object_name`` (e.g. ``"brain MRI scan"``), replacing any earlier phrase.

        Runs outside inference mode, so that what it builds can later be replaced or loaded into (Lightning runs
        validation and test under ``torch.inference_mode``).
        """
        if not isinstance(object_name, str) or not object_name.strip():
            msg = f"object_name must be a non-empty phrase such as 'brain MRI scan', got {object_name!r}."
            raise ValueError(msg)
        with torch.inference_mode(False), torch.no_grad():
            self._prepare_text(object_name)
        self._object_name = object_name

    @abstractmethod
    def _prepare_text(self, object_name: str) -> None:
        """Derive the sentences / token ids of the prompts from ``object_name`` (no heavy encoding)."""

    def _require_text(self) -> None:
        """Raise a clear error when ``forward`` runs before :meth:`setup_text`."""
        if not self.text_ready:
            msg = (
                f"{type(self).__name__}: the prompts are not set up. Call `setup_text(object_name)`, e.g. "
                "`model.setup_text('brain MRI scan')` (the Lightning model does it at the start of every stage and "
                "when it loads a checkpoint)."
            )
            raise RuntimeError(msg)
