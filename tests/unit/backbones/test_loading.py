# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Honest weight loading: fast, actionable failures offline (the fresh-interpreter check is in
``tests/integration/backbones/test_offline.py``); local files; activations."""

from __future__ import annotations

import time
from pathlib import Path

import open_clip
import pytest
import torch

from anomalib_medclip.backbones import WeightsUnavailableError, create_clip, loading


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("OPEN_CLIP_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="hub is unreachable"):
        create_clip("ViT-B-16-plus-240", "laion400m_e31")
    assert time.monotonic() - start < 10


def test_unknown_tag_and_architecture_and_missing_file() -> None:
    with pytest.raises(ValueError, match=r"Unknown pretrained tag 'nope'.*Known tags: \['openai'"):
        create_clip("ViT-B-16", "nope")
    with pytest.raises(ValueError, match="Unknown open_clip architecture 'ViT-Q-99'"):
        create_clip("ViT-Q-99", None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_clip("ViT-B-16", "/no/such/weights.bin")


def test_local_checkpoint_file_is_loaded(tmp_path: Path) -> None:
    source, _ = create_clip("ViT-B-16", None, seed=7)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    loaded, info = create_clip("ViT-B-16", path, seed=0)
    assert info.source.startswith("file")
    for key, value in source.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_cached_tag_weights_are_found_in_open_clip_url_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = open_clip.get_pretrained_cfg("ViT-B-16", "openai")
    monkeypatch.setenv("OPEN_CLIP_CACHE", str(tmp_path))
    assert loading._cached_tag_weights({"url": cfg["url"]}) is None
    target = tmp_path / Path(cfg["url"]).name
    target.write_bytes(b"x")
    assert loading._cached_tag_weights({"url": cfg["url"]}) == str(target)


@pytest.mark.parametrize(
    ("name", "cfg", "activation", "expected"),
    [
        ("ViT-L-14-336", {"quick_gelu": True}, "auto", True),  # OpenAI weights were trained with QuickGELU
        ("ViT-B-16", {}, "auto", False),
        ("ViT-B-16-quickgelu", {}, "auto", True),
        ("ViT-B-16-quickgelu", {}, "gelu", False),
        ("ViT-B-16", {"quick_gelu": True}, "gelu", False),
    ],
)
def test_activation_resolution(name: str, cfg: dict, activation: str, expected: bool) -> None:
    assert loading._resolve_quick_gelu(name, cfg, activation) is expected


def test_openai_tag_config_asks_for_quick_gelu() -> None:
    assert open_clip.get_pretrained_cfg("ViT-L-14-336", "openai")["quick_gelu"] is True
    model, info = create_clip("ViT-B-16", None, activation="quick_gelu")
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert info.quick_gelu
