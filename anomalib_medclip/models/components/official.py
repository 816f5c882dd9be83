# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Reading and writing the checkpoint files that the original implementations publish.

Each port loads its original's file strictly: every expected tensor must be there with the expected shape, and
nothing unexpected may be left over (the originals' own ``strict=False`` loads hide such mismatches). Errors name the
file, the key and what was expected, and say when a file was trained for another CLIP.

Example:
    >>> import torch, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "w.pth"
    >>> _ = save_official_state({"fc.weight": torch.zeros(2, 3)}, path, key="layer")
    >>> list(read_official_state(path, method="Toy", key="layer"))
    ['fc.weight']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from anomalib_medclip.backbones import (
    Activation,
    config_activation,
    native_image_size,
    openai_weights_evidence,
)
from anomalib_medclip.utils import write_atomic

__all__ = ["check_state", "original_activation", "read_official_state", "save_official_file", "save_official_state"]


def read_official_state(path: str | Path, *, method: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of an original's checkpoint file: ``file[key]`` when ``key`` is given, else the file's flat dict.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a readable torch file, or not a dict of tensors under ``key``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"{method} checkpoint '{path}' does not exist."
        raise FileNotFoundError(msg)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        msg = f"{method} checkpoint '{path}' is not a readable torch file: {err}"
        raise ValueError(msg) from err
    state = checkpoint.get(key) if key is not None and isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = list(checkpoint)[:8] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        expected = f"the key '{key}' holding a dict of tensors" if key else "a flat dict of tensors"
        msg = f"'{path}' is not an {method} checkpoint: expected {expected}, found {found}."
        raise ValueError(msg)
    return dict(state)


def check_state(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    *,
    path: str | Path,
    method: str,
    ignore: Iterable[str] = (),
) -> None:
    """Raise unless ``given`` has exactly the keys of ``expected`` (besides ``ignore``) with the same shapes.

    Raises:
        ValueError: missing or unexpected keys, or a shape mismatch (named, with both shapes).
    """
    ignored = set(ignore)
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys() - ignored)
    if missing or unexpected:
        msg = (
            f"'{path}' does not match this {method} configuration: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}."
            " Build the model with the settings the file was trained with (layers, prompt length and depth)."
        )
        raise ValueError(msg)
    for name, tensor in expected.items():
        if tuple(given[name].shape) != tuple(tensor.shape):
            msg = (
                f"'{path}' ['{name}'] has shape {tuple(given[name].shape)}, expected {tuple(tensor.shape)}: the file "
                f"was trained for another CLIP backbone or {method} configuration."
            )
            raise ValueError(msg)


def save_official_state(state: Mapping[str, torch.Tensor], path: str | Path, *, key: str | None = None) -> Path:
    """Write ``{key: state}`` (or the flat ``state``) atomically, on the CPU, in the original's layout."""
    return save_official_file({key: state} if key else state, path)


def save_official_file(content: Mapping[str, object], path: str | Path) -> Path:
    """Write a dict of tensors or of dicts of tensors (``{"seg_adapters": {...}, ...}``) atomically, on the CPU."""

    def cpu(value: object) -> object:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu()
        return {name: cpu(item) for name, item in value.items()}  # type: ignore[union-attr]

    tensors = {name: cpu(value) for name, value in content.items()}
    return write_atomic(Path(path).expanduser(), lambda tmp: torch.save(tensors, tmp))


def original_activation(backbone: str, pretrained: str | Path | None, image_size: int | None) -> Activation:
    """The MLP activation the originals' vendored open_clip builds (APRIL-GAN, MVFA).

    Its vendored open_clip loads OpenAI weights as the QuickGELU model only at the native input size; at any other
    size it builds ``CLIP(**config)``, i.e. the config's activation (``nn.GELU``, not what the weights were trained
    with). OpenAI weights are the ``openai`` tag or a local file that holds them (the offline substitute for the tag,
    see :func:`~anomalib_medclip.backbones.openai_weights_evidence`); other weights get the config's activation;
    ``hf-hub:`` models keep their own (``"auto"``).
    """
    activation = config_activation(backbone)
    if activation == "auto" or pretrained is None:
        return activation
    is_file = Path(str(pretrained)).expanduser().is_file()
    openai = str(pretrained).lower() == "openai" or (is_file and openai_weights_evidence(backbone, pretrained))
    if openai:
        return "quick_gelu" if image_size in {None, native_image_size(backbone)} else activation
    return activation
