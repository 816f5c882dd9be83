# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AprilGAN against the original APRIL-GAN code (``ByChelsea/VAND-APRIL-GAN``), CPU fp32.

Both sides get one random open_clip ViT-B-16 state dict, the same linear layers (the original's ``LinearLayer``
saved in its checkpoint format and loaded through ``official_checkpoint``) and the same images. The reference
numbers come from the original's modules (its vendored open_clip, ``LinearLayer``, prompt ensemble) with the
arithmetic of its ``test.py`` re-stated here: zero-shot scores and maps, and the few-shot map with a memory bank of
reference images (sklearn cosine similarity, as the original). Its fp16 autocast is a context of ``test.py``, not
of the model, so fp32 is the original's own computation on CPU.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import pairwise

from anomalib_medclip import AprilGAN

LAYERS = [3, 6, 9, 12]
OBJECT = "candle"


def _load(name: str, path: Path, package: bool = False) -> ModuleType:
    """Import a file of the original under an alias, so its ``open_clip`` does not shadow pip's."""
    kwargs = {"submodule_search_locations": [str(path.parent)]} if package else {}
    spec = importlib.util.spec_from_file_location(name, path, **kwargs)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vand(original_repo, cpu_only_to, tmp_path_factory) -> SimpleNamespace:
    root = original_repo("ByChelsea+VAND-APRIL-GAN")
    voc = _load("vand_open_clip", root / "open_clip" / "__init__.py", package=True)
    linear_module = _load("vand_model", root / "model.py")
    prompts = _load("vand_prompt_ensemble", root / "prompt_ensemble.py")
    tmp = tmp_path_factory.mktemp("april_gan_parity")

    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None).state_dict()
    torch.save(state, tmp / "vit_b_16.pt")
    torch.manual_seed(1)
    linear = linear_module.LinearLayer(768, 512, len(LAYERS), "ViT-B-16").eval()
    torch.save({"trainable_linearlayer": linear.state_dict()}, tmp / "adapters.pth")

    originals = {}
    for size in (224, 240):
        model = voc.create_model("ViT-B-16", size, pretrained=None)
        sized = dict(state)
        sys.modules["vand_open_clip.model"].resize_pos_embed(sized, model)  # what it does to OpenAI weights
        model.load_state_dict(sized)
        originals[size] = model.eval()
    with torch.no_grad():
        text = prompts.encode_text_with_prompt_ensemble(originals[224], [OBJECT], voc.get_tokenizer("ViT-B-16"), "cpu")[
            OBJECT
        ]
    return SimpleNamespace(originals=originals, linear=linear, text=text, weights=tmp / "vit_b_16.pt", tmp=tmp)


def _original_outputs(vand: SimpleNamespace, size: int, image: torch.Tensor, memory: list[torch.Tensor]):
    """Score, zero-shot map and few-shot map of one image, as the original's ``test.py`` computes them."""
    model, text = vand.originals[size], vand.text
    with torch.no_grad():
        pooled, taps = model.encode_image(image, LAYERS)
        pooled = pooled / pooled.norm(dim=-1, keepdim=True)
        score = (100.0 * pooled @ text).softmax(dim=-1)[0, 1]
        zero_shot = torch.zeros(1, size, size)
        for tokens in vand.linear(list(taps)):
            tokens = tokens / tokens.norm(dim=-1, keepdim=True)
            logits = (100.0 * tokens @ text).permute(0, 2, 1)
            grid = int(np.sqrt(logits.shape[-1]))
            logits = F.interpolate(logits.reshape(1, 2, grid, grid), size=size, mode="bilinear", align_corners=True)
            zero_shot += logits.softmax(dim=1)[:, 1]
        few_shot = torch.zeros(1, 1, size, size)
        for bank, tokens in zip(memory, taps, strict=True):
            cos = pairwise.cosine_similarity(bank.numpy(), tokens[0, 1:].numpy())
            grid = int(np.sqrt(cos.shape[1]))
            distance = torch.tensor(np.min(1 - cos, 0).reshape(1, 1, grid, grid))
            few_shot += F.interpolate(distance, size=size, mode="bilinear", align_corners=True)
    return score, zero_shot, few_shot[0]


@pytest.mark.parametrize("size", [224, 240])
def test_scores_and_maps_match_the_original(vand: SimpleNamespace, size: int) -> None:
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    references = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # the original's memory bank: raw patch tokens (CLS dropped) of the reference images
        taps = [vand.originals[size].encode_image(r[None], LAYERS)[1] for r in references]
        memory = [torch.cat([t[layer][0, 1:] for t in taps]) for layer in range(len(LAYERS))]
    expected = [_original_outputs(vand, size, image[None], memory) for image in images]

    ours = AprilGAN(
        backbone="ViT-B-16", pretrained=str(vand.weights), image_size=size, object_name=OBJECT,
        official_checkpoint=str(vand.tmp / "adapters.pth"), k_shot=2,
    ).model  # fmt: skip
    ours.setup_text(OBJECT)
    assert torch.allclose(ours.text_features(), vand.text, atol=1e-5)
    with torch.no_grad():
        zero_shot = ours(images)
        ours.setup_memory(references)
        few_shot = ours(images)
    for i, (score, zs_map, fs_map) in enumerate(expected):
        assert abs(float(zero_shot.pred_score[i] - score)) < 1e-4
        assert (zero_shot.anomaly_map[i] - zs_map).abs().max() < 1e-4
        assert (few_shot.anomaly_map[i] - zero_shot.anomaly_map[i] - fs_map).abs().max() < 1e-4
        assert fs_map.max() > 0.05  # a real few-shot contribution, not zeros on both sides
