# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Build open_clip models with honest weight loading.

``pretrained`` may be an open_clip tag (``"openai"``, ``"laion400m_e31"``, ...), a local checkpoint file, or
``None`` for an explicitly random initialisation (seeded, so a checkpoint can rebuild it). Models named
``"hf-hub:<org>/<repo>"`` (BiomedCLIP, PMC-CLIP community weights) carry their own weights.

The package registers two extra architectures with open_clip, both only ever with random weights, for tests and smoke
runs that build in milliseconds:

- ``ViT-tiny-test``: open_clip's own ViT and causal text transformer (12 + 12 blocks of width 64, patch 8 at 32 px).
- ``BiomedCLIP-tiny-test``: BiomedCLIP's shape (a timm ViT, ``vit_medclip_tiny_test``: 4 blocks of width 64, patch 8
  at 32 px; a 2-layer Hugging Face BERT of width 64 with a 316-word WordPiece vocabulary, [CLS] pooling, an MLP text
  projection and 256 tokens). Its BERT config and vocabulary ship in ``configs/BiomedCLIP-tiny-test/`` so that the
  stock CLI can build it in any process; it needs the ``biomed`` extra (``transformers``).

open_clip retries downloads for most of a minute before failing and, for some models, only logs "initialized
randomly" when weights are missing. Here, weights are first looked up in the local caches; if they are absent and
the hub cannot be reached (``HF_HUB_OFFLINE=1``, or a 3 s connection probe fails), :class:`WeightsUnavailableError`
is raised at once, naming the backbone, the tag and the fixes. Nothing ever falls back to random weights.

Example:
    >>> model, info = create_clip("ViT-B-16", pretrained=None, seed=0)  # random init, offline
    >>> info.quick_gelu, info.source
    (False, 'random (seed 0)')
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stderr
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import open_clip
import timm
import torch
from torch import nn

__all__ = [
    "TINY_BIOMED_BACKBONE",
    "TINY_TEST_BACKBONE",
    "Activation",
    "ClipInfo",
    "WeightsUnavailableError",
    "config_activation",
    "config_patch_size",
    "create_clip",
    "create_tokenizer",
    "local_weights",
    "native_image_size",
    "openai_weights_evidence",
]

logger = logging.getLogger(__name__)

Activation = Literal["auto", "gelu", "quick_gelu"]
HF_HUB_PREFIX = "hf-hub:"
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_PROBE_TIMEOUT_S = 3.0
TINY_TEST_BACKBONE = "ViT-tiny-test"
TINY_BIOMED_BACKBONE = "BiomedCLIP-tiny-test"
BIOMED_EXTRA_HINT = "pip install 'anomalib-medclip[biomed]'"
_CONFIGS = Path(__file__).with_name("configs")
open_clip.add_model_config(_CONFIGS)


@timm.models.register_model
def vit_medclip_tiny_test(pretrained: bool = False, **kwargs: object) -> nn.Module:
    """A 4-block timm ViT of width 64 (patch 8 at 32 px), the image tower of ``BiomedCLIP-tiny-test``."""
    if pretrained:
        msg = "vit_medclip_tiny_test has no pretrained weights: it is a random test architecture."
        raise ValueError(msg)
    shape = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 4, "num_heads": 2, "mlp_ratio": 2.0}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**shape, **kwargs})


def _register_tiny_biomed() -> None:
    """Register ``BiomedCLIP-tiny-test`` with its Hugging Face folder resolved to this package's copy.

    open_clip reads configs only from files, where a relative folder would resolve against the working directory;
    the config lives in a subfolder (not rescanned by ``add_model_config``) and is entered with an absolute path.
    """
    folder = _CONFIGS / TINY_BIOMED_BACKBONE
    config = json.loads((folder / "model.json").read_text())
    config["text_cfg"].update(hf_model_name=str(folder), hf_tokenizer_name=str(folder))
    open_clip.factory._MODEL_CONFIGS[TINY_BIOMED_BACKBONE] = config  # noqa: SLF001  no public API takes a dict


_register_tiny_biomed()


def _require_biomed_extra(name: str, model_cfg: dict | None) -> None:
    """A clear error when an architecture with a Hugging Face text tower is built without ``transformers``."""
    if (model_cfg or {}).get("text_cfg", {}).get("hf_model_name") and importlib.util.find_spec("transformers") is None:
        msg = (
            f"Backbone '{name}' has a Hugging Face text tower (e.g. BiomedCLIP's PubMedBERT), which needs the "
            f"optional 'biomed' extra: `{BIOMED_EXTRA_HINT}` (installs transformers)."
        )
        raise ImportError(msg)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached locally nor reachable."""


@dataclass(frozen=True)
class ClipInfo:
    """What was built: enough to rebuild the same backbone and to preprocess its input."""

    name: str
    pretrained: str | None
    quick_gelu: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    native_image_size: int
    source: str


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_reachable() -> bool:
    """Cheap connectivity probe of the Hugging Face endpoint (DNS + TCP connect, 3 s timeout)."""
    if _hub_offline():
        return False
    from huggingface_hub import constants

    parsed = urlparse(constants.ENDPOINT)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _cached_hf_file(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id.rstrip("/"), filename)
        if isinstance(path, str) and Path(path).is_file():
            return path
    return None


def _cached_tag_weights(cfg: dict) -> str | None:
    """Local file holding the weights of an open_clip tag, from the HF cache or open_clip's URL cache."""
    if cfg.get("hf_hub"):
        parts = cfg["hf_hub"].strip("/").split("/")
        repo_id, names = "/".join(parts[:2]), ("/".join(parts[2:]),) if len(parts) > 2 else _HF_WEIGHT_FILES
        if found := _cached_hf_file(repo_id, names):
            return found
    if cfg.get("url"):
        cache = Path(os.environ.get("OPEN_CLIP_CACHE", Path.home() / ".cache" / "clip"))
        candidate = cache / Path(urlparse(cfg["url"]).path).name
        if candidate.is_file():
            return str(candidate)
    return None


def _unavailable(name: str, pretrained: str, detail: str) -> WeightsUnavailableError:
    detail = " ".join(detail.split())  # one line: the error's last line carries the fixes
    msg = (
        f"Pretrained weights for backbone '{name}' with pretrained='{pretrained}' are not available: {detail}. "
        "Fix one of: (1) connect to the internet once so open_clip can download them into the cache "
        "(~/.cache/huggingface or ~/.cache/clip), and unset HF_HUB_OFFLINE; (2) pre-download them on another "
        "machine and copy the cache"
    )
    if name.startswith(HF_HUB_PREFIX):  # the hub id fixes the weights: no local file or None applies
        msg += (
            " (the repository and, for a Hugging Face text tower such as BiomedCLIP's, its tokenizer/config "
            "repository, e.g. microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract); (3) for an offline smoke test "
            f"only, build a random model of the same tower kinds: backbone='{TINY_BIOMED_BACKBONE}' (BiomedCLIP's) "
            "or an open_clip architecture, with pretrained=None (results are meaningless)."
        )
    else:
        msg += (
            "; (3) pass a local checkpoint file, e.g. pretrained='/path/to/weights.bin'; (4) for an offline smoke "
            "test only, pass pretrained=None for random weights (results are meaningless)."
        )
    return WeightsUnavailableError(msg)


def config_activation(name: str) -> Activation:
    """The MLP activation of an architecture's open_clip config, whatever the weights (``"auto"`` for ``hf-hub:``).

    What code that builds ``CLIP(**config)`` gets (AdaCLIP, and APRIL-GAN at a non-native size): ``nn.GELU`` for the
    plain ViT configs even with OpenAI weights, which were trained with QuickGELU.

    Example:
        >>> config_activation("ViT-L-14-336"), config_activation("ViT-B-16-quickgelu")
        ('gelu', 'quick_gelu')
    """
    config = None if name.startswith(HF_HUB_PREFIX) else open_clip.get_model_config(name)
    if config is None:
        return "auto"
    return "quick_gelu" if config.get("quick_gelu", False) else "gelu"


def native_image_size(name: str) -> int | None:
    """Input size of an open_clip architecture's config (``None`` for ``hf-hub:`` ids and unknown names).

    Example:
        >>> native_image_size("ViT-L-14-336"), native_image_size(TINY_TEST_BACKBONE)
        (336, 32)
    """
    config = None if name.startswith(HF_HUB_PREFIX) else open_clip.get_model_config(name)
    return int(config["vision_cfg"]["image_size"]) if config else None


def config_patch_size(name: str) -> int | None:
    """Patch size of an open_clip ViT architecture's config (``None`` for ``hf-hub:`` ids and unknown names).

    Example:
        >>> config_patch_size("ViT-L-14-336")
        14
    """
    config = None if name.startswith(HF_HUB_PREFIX) else open_clip.get_model_config(name)
    patch = config.get("vision_cfg", {}).get("patch_size") if config else None
    return int(patch) if patch else None


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder), the format of OpenAI's release."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(member.split("/")[1:2] == ["code"] for member in archive.namelist())


def openai_weights_evidence(name: str, path: str | Path) -> str | None:
    """Why a local weights file holds OpenAI's CLIP weights (trained with QuickGELU), or ``None`` if nothing says so.

    A plain state dict does not record the activation its weights were trained with, so ``activation="auto"`` can
    only follow evidence: a TorchScript archive (how OpenAI released CLIP), OpenAI's ``input_resolution`` entry in a
    state dict, OpenAI's release file name for the architecture (``ViT-L-14-336px.pt``), or an architecture whose only
    released weights are OpenAI's (``ViT-L-14-336``).
    """
    path = Path(path).expanduser()
    if _is_torchscript(path):
        return f"{path} is a TorchScript archive, the format of OpenAI's CLIP release"
    if path.suffix != ".safetensors" and zipfile.is_zipfile(path):
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else {}
        if "input_resolution" in state:
            return f"{path} holds OpenAI's 'input_resolution' entry"
    tags = [] if name.startswith(HF_HUB_PREFIX) else open_clip.list_pretrained_tags_by_model(name)
    if "openai" in tags:
        release = Path(urlparse(open_clip.get_pretrained_cfg(name, "openai").get("url", "")).path).name
        if release and path.name == release:
            return f"{path.name} is OpenAI's release file name for {name}"
        if tags == ["openai"]:
            return f"the only released weights of {name} are OpenAI's"
    return None


def _build_from_file(name: str, path: Path, quick_gelu: bool, seed: int) -> nn.Module:
    """Build ``name`` and load a local file: open_clip's loader, or OpenAI's TorchScript release read as a state dict.

    torch >= 2.6 refuses TorchScript archives in ``torch.load(weights_only=True)``, which open_clip uses, so OpenAI's
    ``.pt`` files are opened with ``torch.jit.load``; their tensors load into the named architecture as they are.
    """
    if not _is_torchscript(path):
        return _build(name, str(path), quick_gelu, seed)
    skipped = {"input_resolution", "context_length", "vocab_size", "attn_mask"}  # metadata and a derived buffer
    state = {k: v for k, v in torch.jit.load(path, map_location="cpu").state_dict().items() if k not in skipped}
    model = _build(name, None, quick_gelu, seed)
    own = model.state_dict()
    differ = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
    if differ:
        key = differ[0]
        detail = f"{tuple(state[key].shape) if key in state else 'missing'} in the file vs "
        detail += f"{tuple(own[key].shape) if key in own else 'absent'} in the architecture"
        msg = (
            f"Weights file {path} does not fit backbone '{name}': {len(differ)} tensors differ, e.g. {key} "
            f"({detail}). Pass the architecture the file was trained as."
        )
        raise ValueError(msg)
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model


def _file_quick_gelu(name: str, path: Path, activation: Activation) -> bool:
    """The activation for a local file: the explicit one, else what the evidence says (see openai_weights_evidence)."""
    if activation != "auto":
        return activation == "quick_gelu"
    if evidence := openai_weights_evidence(name, path):
        logger.info("Backbone %s: OpenAI weights (%s): QuickGELU.", name, evidence)
        return True
    quick_gelu = _resolve_quick_gelu(name, {}, activation)
    logger.warning(
        "Backbone %s: nothing in %s says which activation its weights were trained with; using the architecture "
        "config's (%s). Pass activation='quick_gelu' if these are OpenAI's CLIP weights.",
        name,
        path,
        "QuickGELU" if quick_gelu else "GELU",
    )
    return quick_gelu


def _resolve_quick_gelu(name: str, pretrained_cfg: dict, activation: Activation) -> bool:
    if activation != "auto":
        return activation == "quick_gelu"
    if "quick_gelu" in pretrained_cfg:  # what the weights were trained with
        return bool(pretrained_cfg["quick_gelu"])
    model_cfg = open_clip.get_model_config(name) or {}
    return bool(model_cfg.get("quick_gelu", False))


@contextmanager
def _forced_hub_offline() -> Iterator[None]:
    """Make huggingface_hub read only its cache (no retries against an unreachable network)."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _build(name: str, pretrained: str | None, quick_gelu: bool, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]), redirect_stderr(StringIO()):  # CPU generator only, restored after
        torch.default_generator.manual_seed(seed)
        # pretrained_text=False: a Hugging Face text tower never loads its own hub weights (they come from the CLIP
        # checkpoint, or the model is random when pretrained is None)
        return open_clip.create_model(
            name, pretrained=pretrained, quick_gelu=quick_gelu, require_pretrained=bool(pretrained),
            pretrained_text=False,
        )  # fmt: skip


def _create_from_tag(name: str, tag: str, activation: Activation, seed: int) -> tuple[nn.Module, bool, str]:
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        msg = (
            f"Unknown pretrained tag '{tag}' for backbone '{name}'. Known tags: {tags or 'none'}. "
            "Pass one of them, a local checkpoint file, or None for random weights."
        )
        raise ValueError(msg)
    cfg = open_clip.get_pretrained_cfg(name, tag)
    quick_gelu = _resolve_quick_gelu(name, cfg, activation)
    if local := _cached_tag_weights(cfg):
        return _build(name, local, quick_gelu, seed), quick_gelu, f"cache ({local})"
    if not _hub_reachable():
        detail = "not in the local cache and the hub is unreachable" + (" (HF_HUB_OFFLINE=1)" if _hub_offline() else "")
        raise _unavailable(name, tag, detail)
    try:
        return _build(name, tag, quick_gelu, seed), quick_gelu, f"download ({tag})"
    except RuntimeError as err:
        raise _unavailable(name, tag, str(err)) from err


def _create_from_hub(name: str, activation: Activation, seed: int) -> tuple[nn.Module, bool, str]:
    """Build an ``hf-hub:`` model from the cache (read offline, no retries) or a download.

    A Hugging Face text tower (BiomedCLIP's PubMedBERT) also needs its own repository's config and tokenizer: the cache
    is only used offline when that repository is cached too, and a missing one is named in the error.
    """
    repo_id, weights = name.removeprefix(HF_HUB_PREFIX), "(weights from the hub id)"
    cached = _cached_hf_file(repo_id, ("open_clip_config.json",)) and _cached_hf_file(repo_id, _HF_WEIGHT_FILES)
    if not cached and not _hub_reachable():
        raise _unavailable(name, weights, f"'{repo_id}' is not in the HF cache and the hub is unreachable")
    text_repo = None
    if config_file := _cached_hf_file(repo_id, ("open_clip_config.json",)):
        model_cfg = json.loads(Path(config_file).read_text()).get("model_cfg") or {}
        _require_biomed_extra(name, model_cfg)
        text_repo = model_cfg.get("text_cfg", {}).get("hf_model_name")
    offline = bool(cached) and (not text_repo or bool(_cached_hf_file(text_repo, ("config.json",))))
    if cached and not offline and not _hub_reachable():
        detail = f"its text tower's repository '{text_repo}' is not in the HF cache and the hub is unreachable"
        raise _unavailable(name, weights, detail)
    quick_gelu = activation == "quick_gelu"
    try:
        if offline:
            with _forced_hub_offline():
                return _build(name, None, quick_gelu, seed), quick_gelu, f"cache ({repo_id})"
        return _build(name, None, quick_gelu, seed), quick_gelu, f"download ({repo_id})"
    except (RuntimeError, OSError) as err:
        raise _unavailable(name, weights, str(err)) from err
    except ImportError as err:
        msg = f"Backbone '{name}' needs an optional package ({err}): `{BIOMED_EXTRA_HINT}`."
        raise ImportError(msg) from err


def create_tokenizer(info: ClipInfo) -> Callable[[list[str]], torch.Tensor]:
    """The tokenizer of a built backbone: CLIP's BPE, or a Hugging Face tokenizer (BiomedCLIP's WordPiece).

    A backbone read from the cache reads its tokenizer from the cache too (no network retries); a missing tokenizer
    repository raises :class:`WeightsUnavailableError` naming it.
    """
    offline = _forced_hub_offline() if info.source.startswith("cache") else nullcontext()
    try:
        with offline:
            return open_clip.get_tokenizer(info.name)
    except OSError as err:
        raise _unavailable(info.name, f"{info.pretrained}", f"its tokenizer could not be read ({err})") from err


def create_clip(
    name: str,
    pretrained: str | Path | None,
    *,
    activation: Activation = "auto",
    seed: int = 0,
) -> tuple[nn.Module, ClipInfo]:
    """Create an open_clip model and report how it was built.

    Args:
        name: open_clip architecture (``"ViT-L-14-336"``, ``"ViT-B-16-plus-240"``, ...) or ``"hf-hub:<org>/<repo>"``.
        pretrained: open_clip tag, local checkpoint file, or ``None`` (random init from ``seed``).
        activation: ``"auto"`` uses what the weights were trained with (QuickGELU for OpenAI weights, so
            ``ViT-L-14-336`` + ``openai`` builds the QuickGELU variant; for a local file, what
            :func:`openai_weights_evidence` finds, else the config's, warned); ``"gelu"``/``"quick_gelu"`` force one.
        seed: seed of the random initialisation (only used when ``pretrained`` is ``None``).

    Returns:
        The model (eval mode) and a :class:`ClipInfo`.

    Raises:
        WeightsUnavailableError: weights not cached and not reachable.
        ValueError: unknown architecture or tag.
        FileNotFoundError: ``pretrained`` looks like a path that does not exist.
    """
    if not name.startswith(HF_HUB_PREFIX) and name not in open_clip.list_models():
        msg = f"Unknown open_clip architecture '{name}'. Available: {open_clip.list_models()}."
        raise ValueError(msg)
    if not name.startswith(HF_HUB_PREFIX):
        _require_biomed_extra(name, open_clip.get_model_config(name))
    pretrained = str(pretrained) if pretrained not in {None, ""} else None
    if name.startswith(HF_HUB_PREFIX):
        model, quick_gelu, source = _create_from_hub(name, activation, seed)
    elif pretrained is None:
        quick_gelu = _resolve_quick_gelu(name, {}, activation)
        model, source = _build(name, None, quick_gelu, seed), f"random (seed {seed})"
        logger.warning("Backbone %s uses RANDOM weights (pretrained=None): scores are not meaningful.", name)
    elif Path(pretrained).expanduser().is_file():
        path = Path(pretrained).expanduser()
        try:
            quick_gelu = _file_quick_gelu(name, path, activation)
            model, source = _build_from_file(name, path, quick_gelu, seed), f"file ({pretrained})"
        except ValueError:  # already names the file and the fix
            raise
        except Exception as err:  # whatever a torch/zip/pickle reader raises on a file that is not CLIP weights
            detail = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}"
            msg = (
                f"Weights file {path} could not be read as CLIP weights for backbone '{name}' ({detail}). It may be "
                "truncated, or not a weights file: pass an open_clip/OpenAI checkpoint (.pt, .bin, .safetensors), an "
                "open_clip tag, or None."
            )
            raise ValueError(msg) from err
    elif any(sep in pretrained for sep in ("/", os.sep)) or pretrained.endswith((".pt", ".bin", ".safetensors")):
        msg = f"Checkpoint file '{pretrained}' for backbone '{name}' does not exist."
        raise FileNotFoundError(msg)
    else:
        model, quick_gelu, source = _create_from_tag(name, pretrained, activation, seed)
    model.eval()
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD))
    size = pcfg.get("size", getattr(model.visual, "image_size", 224))
    native = int(size[0] if isinstance(size, tuple | list) else size)
    return model, ClipInfo(name, pretrained, quick_gelu, mean, std, native, source)


def local_weights(name: str, pretrained: str | Path | None) -> tuple[bool, str]:
    """Whether ``create_clip(name, pretrained)`` would find its weights without a download, and where.

    Builds nothing and touches no network: used by ``--dry-run`` listings to say, per configuration, whether the
    weights are a local file, in the cache, random (``None``), or missing.

    Returns:
        ``(available, description)``; ``available`` is ``False`` when a download would be needed or the file,
        architecture or tag does not exist.
    """
    if name.startswith(HF_HUB_PREFIX):
        repo_id = name.removeprefix(HF_HUB_PREFIX)
        found = _cached_hf_file(repo_id, ("open_clip_config.json",)) and _cached_hf_file(repo_id, _HF_WEIGHT_FILES)
        return (True, f"HF cache ({found})") if found else (False, f"'{repo_id}' not in the HF cache (download)")
    pretrained = str(pretrained) if pretrained not in {None, ""} else None
    if pretrained is None:
        return True, "random weights (pretrained=None): results are meaningless"
    if Path(pretrained).expanduser().is_file():
        return True, f"file {pretrained}"
    if any(sep in pretrained for sep in ("/", os.sep)) or pretrained.endswith((".pt", ".bin", ".safetensors")):
        return False, f"file {pretrained} does not exist"
    if name not in open_clip.list_models():
        return False, f"unknown open_clip architecture '{name}'"
    if pretrained not in open_clip.list_pretrained_tags_by_model(name):
        return False, f"unknown pretrained tag '{pretrained}' for '{name}'"
    local = _cached_tag_weights(open_clip.get_pretrained_cfg(name, pretrained))
    return (True, f"cache {local}") if local else (False, f"{name}/{pretrained} not in the local cache (download)")
