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

from anomalib_medclip.utils import write_atomic

__all__ = ["check_state", "read_official_state", "save_official_state"]


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
    tensors = {name: value.detach().cpu() for name, value in state.items()}
    return write_atomic(Path(path).expanduser(), lambda tmp: torch.save({key: tensors} if key else tensors, tmp))
