# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Slim checkpoints: keep frozen CLIP weights out of Lightning checkpoints.

anomalib stores every tensor of a model (WinCLIP writes ~800 MB). Frozen backbone weights are reproducible from the
backbone's identity (architecture, tag or file, seed of a random init), so :class:`SlimCheckpointMixin` drops them on
save, records the identity with a fingerprint of the weights, refills them from the freshly built backbone on load,
and refuses a checkpoint whose backbone identity differs from the one the model was built with. Trainable backbone
parameters (e.g. unfrozen last blocks) stay in the checkpoint.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from anomalib_medclip.backbones import CLIPBackbone

__all__ = ["SlimCheckpointMixin"]

_IDENTITY_KEY = "anomalib_medclip_backbones"


class SlimCheckpointMixin:
    """Mixin for ``AnomalibModule`` subclasses holding one or more :class:`CLIPBackbone` modules."""

    def _backbones(self) -> dict[str, CLIPBackbone]:
        return {name: module for name, module in self.named_modules() if isinstance(module, CLIPBackbone)}

    def _frozen_backbone_keys(self) -> set[str]:
        prefixes = tuple(f"{name}." for name in self._backbones())
        trainable = {name for name, param in self.named_parameters() if param.requires_grad}
        return {key for key in nn.Module.state_dict(self) if key.startswith(prefixes) and key not in trainable}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop frozen backbone tensors and record each backbone's identity."""
        super().on_save_checkpoint(checkpoint)
        for key in self._frozen_backbone_keys():
            checkpoint["state_dict"].pop(key, None)
        checkpoint[_IDENTITY_KEY] = {name: backbone.identity() for name, backbone in self._backbones().items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint trained on other backbone weights than the ones this model was built with."""
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get(_IDENTITY_KEY, {})
        for name, backbone in self._backbones().items():
            if name in saved and saved[name] != backbone.identity():
                msg = (
                    f"Checkpoint was trained with backbone {saved[name]}, but this model was built with "
                    f"{backbone.identity()}. Build the model with the checkpoint's backbone/pretrained/image_size "
                    "(and seed, for random weights)."
                )
                raise ValueError(msg)

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Refill the frozen backbone tensors from the built backbone; genuine missing keys still raise."""
        own = nn.Module.state_dict(self)
        state_dict = dict(state_dict)
        for key in self._frozen_backbone_keys():
            state_dict.setdefault(key, own[key])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
