# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""A local copy of OpenAI's weights gets QuickGELU, the activation they were trained with (issue: bad input #9).

A state dict does not record its activation, so ``activation="auto"`` follows evidence: a TorchScript archive
(OpenAI's release format), OpenAI's ``input_resolution`` entry, OpenAI's release file name, or an architecture whose
only released weights are OpenAI's; without evidence it warns and uses the config's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import pytest
import torch

from anomalib_medclip.backbones import TINY_TEST_BACKBONE, create_clip, openai_weights_evidence
from anomalib_medclip.models import AnomalyCLIP
from anomalib_medclip.models.april_gan.lightning_model import original_activation


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Path]:
    """The tiny CLIP as a plain state dict and as a TorchScript archive (how OpenAI released CLIP)."""
    root = tmp_path_factory.mktemp("weights")
    model, _ = create_clip(TINY_TEST_BACKBONE, None, seed=3)
    plain = root / "weights.pt"
    torch.save(model.state_dict(), plain)
    traced = torch.jit.trace(model, (torch.rand(1, 3, 32, 32), torch.randint(0, 99, (1, 77))), check_trace=False)
    scripted = root / "release.pt"
    torch.jit.save(traced, scripted)
    return model, plain, scripted


def test_evidence(tiny_weights: tuple, tmp_path: Path) -> None:
    model, plain, scripted = tiny_weights
    assert "TorchScript archive" in openai_weights_evidence(TINY_TEST_BACKBONE, scripted)
    assert openai_weights_evidence(TINY_TEST_BACKBONE, plain) is None
    code = tmp_path / "code.pt"  # torch.save names the archive's folder after the file: code/data.pkl
    torch.save(model.state_dict(), code)
    assert openai_weights_evidence(TINY_TEST_BACKBONE, code) is None
    marked = tmp_path / "marked.pt"
    torch.save({**model.state_dict(), "input_resolution": torch.tensor(32)}, marked)
    assert "input_resolution" in openai_weights_evidence(TINY_TEST_BACKBONE, marked)
    release = Path(open_clip.get_pretrained_cfg("ViT-B-16", "openai")["url"]).name  # ViT-B-16.pt
    named = tmp_path / release
    named.write_bytes(plain.read_bytes())
    assert "release file name" in openai_weights_evidence("ViT-B-16", named)
    assert openai_weights_evidence("ViT-B-16", plain) is None  # ViT-B-16 has LAION weights too: no evidence
    assert "only released weights" in openai_weights_evidence("ViT-L-14-336", plain)


def test_openai_release_file_loads_with_quick_gelu(tiny_weights: tuple) -> None:
    model, _, scripted = tiny_weights
    loaded, info = create_clip(TINY_TEST_BACKBONE, scripted)
    assert info.quick_gelu
    assert info.source.startswith("file")
    for key, value in model.state_dict().items():
        if key != "attn_mask":
            assert torch.equal(value.float(), loaded.state_dict()[key].float()), key
    _, forced = create_clip(TINY_TEST_BACKBONE, scripted, activation="gelu")  # an explicit choice wins
    assert not forced.quick_gelu
    with pytest.raises(ValueError, match=r"Pass the architecture the file was trained as"):
        create_clip("ViT-B-16", scripted)


def test_plain_file_without_evidence_warns(tiny_weights: tuple, caplog: pytest.LogCaptureFixture) -> None:
    _, plain, _ = tiny_weights
    with caplog.at_level(logging.WARNING):
        _, info = create_clip(TINY_TEST_BACKBONE, plain)
    assert not info.quick_gelu
    assert "Pass activation='quick_gelu' if these are OpenAI's CLIP weights" in caplog.text
    assert create_clip(TINY_TEST_BACKBONE, plain, activation="quick_gelu")[1].quick_gelu


def test_models_on_a_local_openai_file(tiny_weights: tuple) -> None:
    _, plain, scripted = tiny_weights
    model = AnomalyCLIP(backbone=TINY_TEST_BACKBONE, pretrained=str(scripted), image_size=32)
    assert model.model.backbone.info.quick_gelu  # the original runs OpenAI's weights with QuickGELU
    assert original_activation(TINY_TEST_BACKBONE, str(scripted), None) == "quick_gelu"
    assert original_activation(TINY_TEST_BACKBONE, str(scripted), 64) == "gelu"  # CLIP(**config) off native size
    assert original_activation(TINY_TEST_BACKBONE, str(plain), None) == "gelu"
