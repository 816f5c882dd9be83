# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnoVL against the original code (``hq-deng/AnoVL``), CPU fp32.

Both sides get one random open_clip ViT-B-16 state dict (``nn.GELU``; the original's vendored open_clip is imported
under an alias so that it does not shadow pip's) and the same image. The reference numbers come from the original's
modules (its CLIP with the value-value surgery, ``encode_text_with_prompt_ensemble``, ``LinearLayer``, ``TextAdapter``,
``utils.aug``, ``loss_func``) with the arithmetic of its ``vl_test.py`` (MVTec path) re-stated here. For the test-time
adaptation the original's adapter starts from our seeded initial weights and its noise draws are replaced by ours
(``torch.normal`` patched), so that the arithmetic is compared exactly; its optimiser is fresh, as for the first image
of a class (it keeps the optimiser state across images, which we do not).

With random weights the maps span only ~3e-3 around 0.5, so they are compared at 1e-6.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from types import SimpleNamespace

import open_clip
import pytest
import torch
import torch.nn.functional as F

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.ano_vl import AnoVLModel

OBJECT, SIZE, FEATURES = "bottle", 224, [3, 6, 9, 12]


@pytest.fixture(scope="module")
def original(original_repo, import_original) -> SimpleNamespace:
    root = original_repo("hq-deng+AnoVL")
    spec = importlib.util.spec_from_file_location(
        "anovl_open_clip", root / "open_clip" / "__init__.py", submodule_search_locations=[str(root / "open_clip")]
    )
    vendored = importlib.util.module_from_spec(spec)
    sys.modules["anovl_open_clip"] = vendored
    spec.loader.exec_module(vendored)
    sys.modules.setdefault(
        "tabulate", types.SimpleNamespace(tabulate=lambda *_args, **_kwargs: "")
    )  # metrics table only
    modules = import_original(root, "model", "prompt_ensemble", "utils", "vl_test")
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None).state_dict()
    model = vendored.create_model("ViT-B-16", SIZE, pretrained=None)
    model.load_state_dict(state)  # before the first forward: its lazy surgery renames the attention modules
    model.eval()
    with torch.no_grad():
        text, sentences = modules.prompt_ensemble.encode_text_with_prompt_ensemble(
            model, [OBJECT], vendored.get_tokenizer("ViT-B-16"), "cpu"
        )
    return SimpleNamespace(
        clip=model, state=state, text=text[OBJECT], sentences=sentences[OBJECT], modules=modules.model,
        utils=modules.utils, vl_test=modules.vl_test,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ours(original: SimpleNamespace, tmp_path_factory) -> AnoVLModel:
    path = tmp_path_factory.mktemp("ano_vl_parity") / "vit_b_16.pt"
    torch.save(original.state, path)
    model = AnoVLModel(CLIPBackbone("ViT-B-16", str(path), image_size=SIZE), tta_steps=5).eval()
    model.setup_text(OBJECT)
    return model


def _original_map(original: SimpleNamespace, ours: AnoVLModel, image: torch.Tensor, tta: bool) -> torch.Tensor:
    """``vl_test.py`` lines 240-290 for one image; the adapter's start and noise are ours."""
    vl_test, text = original.vl_test, original.text[None]
    linear = original.modules.LinearLayer(768, 512, len(FEATURES), "ViT-B-16", original.clip)
    with torch.no_grad():
        tokens = linear(original.clip.encode_image(image, FEATURES)[1])[6]
    adapter = original.modules.TextAdapter(original.sentences)
    if tta:
        weight, bias = ours.tta_init()
        adapter.ad.weight.data, adapter.ad.bias.data = weight.clone(), bias.clone()
        optimizer = torch.optim.AdamW(adapter.parameters(), 1e-3)
        draws = iter(ours.tta_noise(tokens.shape[1]))
        real_normal = torch.normal
        torch.normal = lambda _mean, _std, shape: next(draws).reshape(shape)
        try:
            for _ in range(5):
                adapted = adapter(vl_test.resize_tokens(tokens))
                probs = torch.softmax(adapted / adapted.norm(dim=-1, keepdim=True) @ text, dim=-1)
                loss = vl_test.loss_func(probs)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        finally:
            torch.normal = real_normal
    grid = vl_test.resize_tokens(tokens)
    with torch.no_grad():
        grid = adapter(grid, is_test=True) if tta else grid
        probs = torch.softmax(grid / grid.norm(dim=-1, keepdim=True) @ text, dim=-1)[..., 1].unsqueeze(1)
        probs = F.avg_pool2d(F.pad(probs, (1, 1, 1, 1), "replicate"), 3, stride=1, padding=0, count_include_pad=False)
        return F.interpolate(probs, size=SIZE, mode="bilinear", align_corners=True)[0]


def test_text_features_match_the_original(original: SimpleNamespace, ours: AnoVLModel) -> None:
    text, sentences = ours.text_features()
    assert (text - original.text).abs().max() < 1e-5
    expected = torch.cat([original.sentences[..., 0], original.sentences[..., 1]])
    assert (sentences - expected).abs().max() < 1e-5


def test_score_and_maps_match_the_original(original: SimpleNamespace, ours: AnoVLModel) -> None:
    image = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        views = original.clip.encode_image(original.utils.aug(image), FEATURES)[0]
        views = views / views.norm(dim=-1, keepdim=True)
        score = (views @ original.text).softmax(dim=-1).mean(dim=0)[0, 1]
    zero_shot = _original_map(original, ours, image, tta=False)
    adapted = _original_map(original, ours, image, tta=True)

    ours.tta_steps = 0
    with torch.no_grad():
        out_zero_shot = ours(image)
    ours.tta_steps = 5
    out = ours(image)
    assert abs(float(out.pred_score[0] - score)) < 1e-5
    assert torch.equal(out.pred_score, out_zero_shot.pred_score)  # the adaptation does not touch the score
    assert (out_zero_shot.anomaly_map[0] - zero_shot).abs().max() < 1e-6
    assert (out.anomaly_map[0] - adapted).abs().max() < 1e-6
    assert (adapted - zero_shot).abs().max() > 1e-5  # the adaptation changed the map on both sides
