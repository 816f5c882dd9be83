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

import zipfile
from pathlib import Path
from typing import Any

from torch import nn

from anomalib_medclip.backbones import CLIPBackbone

__all__ = ["SlimCheckpointMixin", "check_checkpoint_file"]

_IDENTITY_KEY = "anomalib_medclip_backbones"


def check_checkpoint_file(path: str | Path) -> None:
    """Refuse, naming the file, a checkpoint that is missing, truncated or not a checkpoint at all.

    ``torch.save`` (and so Lightning) writes zip archives whose directory sits at the end of the file: a truncated
    file has none, and the error that reading it raises deep inside fsspec or torch names neither file nor cause.
    """
    if "://" in str(path):  # a URL or fsspec location (s3://, https://): Lightning reads it, nothing to check here
        return
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"Checkpoint {path} does not exist: pass the model.ckpt that `anomalib train` wrote (weights/lightning/)."
        raise FileNotFoundError(msg)
    if not zipfile.is_zipfile(path):
        msg = (
            f"Checkpoint {path} ({path.stat().st_size} bytes) is truncated or not a checkpoint: torch/Lightning "
            "checkpoints are zip archives and this file has no zip directory. Copy it again, or pass the model.ckpt "
            "that `anomalib train` wrote."
        )
        raise ValueError(msg)


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
        self._checkpoint_settings = dict(checkpoint.get("hyper_parameters", {}))
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
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as err:
            if differing := self._differing_settings():
                msg = (
                    f"This checkpoint's tensors do not fit the model: it was trained with {differing['checkpoint']}, "
                    f"this {type(self).__name__} was built with {differing['model']}. Build the model with the "
                    "checkpoint's settings, or load it with the class's load_from_checkpoint (which does)."
                )
                raise ValueError(msg) from err
            raise

    def _differing_settings(self) -> dict[str, str]:
        """The constructor settings where the checkpoint being loaded and this model differ, as text."""
        stored, own = getattr(self, "_checkpoint_settings", {}), dict(getattr(self, "hparams", {}))
        keys = [key for key in own if key in stored and stored[key] != own[key] and key != "volume_evaluator"]
        if not keys:
            return {}
        return {
            "checkpoint": ", ".join(f"{key}={stored[key]!r}" for key in keys),
            "model": ", ".join(f"{key}={own[key]!r}" for key in keys),
        }
