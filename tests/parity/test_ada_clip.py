# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP against the original code (``caoyunkang/AdaCLIP``), CPU fp32.

Both sides get one random open_clip ViT-B-16 state dict (``nn.GELU``, as the original builds ``CLIP(**config)``),
resized with the original's own ``resize_pos_embed`` (bicubic, no antialias) for non-native sizes, the same learnable
tensors (the original's seeded ``AdaCLIP`` module, its prompts scaled up so that every part matters, saved in its flat
``clip_model.*`` format and loaded through ``official_checkpoint``) and the same images. The original's forward is
called without its ``torch.cuda.amp.autocast`` decorator (``__wrapped__``), one image at a time (it fails at batch
size 2); ours gets the whole batch. Its map is smoothed with scipy's ``gaussian_filter(sigma=4)`` as its trainer does.

With HSF, the original clusters with scikit-learn's ``KMeans`` (seeded here); ours is patched to cluster with the same
seeded ``KMeans`` too, so that the rest of the fusion is compared exactly (our own torch k-means is tested against
scikit-learn in the unit tests).
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from types import SimpleNamespace

import open_clip
import pytest
import torch
from scipy.ndimage import gaussian_filter
from sklearn.cluster import KMeans

from anomalib_medclip import AdaCLIP
from anomalib_medclip.models.ada_clip import hsf

LAYERS = [3, 6, 9, 12]
LEARNABLE = ("text_prompter", "visual_prompter", "patch_token_layer", "cls_token_layer", "dynamic_")


@pytest.fixture(scope="module")
def original(original_repo, tmp_path_factory) -> SimpleNamespace:
    root = original_repo("caoyunkang+AdaCLIP")
    package = types.ModuleType("method")  # skip method/__init__.py (it imports the trainer: cv2, tensorboard, ...)
    package.__path__ = [str(root / "method")]
    sys.modules["method"] = package
    adaclip = importlib.import_module("method.adaclip")
    clip_model = importlib.import_module("method.clip_model")
    tmp = tmp_path_factory.mktemp("ada_clip_parity")
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None).state_dict()
    torch.save(state, tmp / "vit_b_16.pt")
    return SimpleNamespace(adaclip=adaclip, clip_model=clip_model, root=root, state=state, tmp=tmp)


def _original_model(original: SimpleNamespace, size: int, use_hsf: bool):
    config = json.loads((original.root / "model_configs" / "ViT-B-16.json").read_text())
    config["vision_cfg"]["image_size"] = size
    clip = original.clip_model.CLIP(**config)
    state = dict(original.state)
    original.clip_model.resize_pos_embed(state, clip)
    clip.load_state_dict(state)
    torch.manual_seed(1)
    model = original.adaclip.AdaCLIP(
        freeze_clip=clip, text_channel=512, visual_channel=768, prompting_length=5, prompting_depth=4,
        prompting_branch="VL", prompting_type="SD", use_hsf=use_hsf, k_clusters=20, output_layers=LAYERS,
        device="cpu", image_size=size,
    ).eval()  # fmt: skip
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "prompter" in name or "generator" in name:
                param.normal_(std=0.5)
    if use_hsf:
        model.HSF.cluster_performer = KMeans(n_clusters=20, n_init="auto", random_state=0)
    path = original.tmp / f"adaclip_{size}_{use_hsf}.pth"
    torch.save({f"clip_model.{k}": v for k, v in model.state_dict().items() if k.startswith(LEARNABLE)}, path)
    return model, path


def _sklearn_kmeans(x: torch.Tensor, k: int, *, seed: int = 0, max_iter: int = 100) -> torch.Tensor:
    del seed, max_iter
    labels = [KMeans(n_clusters=k, n_init="auto", random_state=0).fit_predict(xi.numpy()) for xi in x]
    return torch.as_tensor(labels, dtype=torch.long)


@pytest.mark.parametrize(("size", "use_hsf"), [(224, False), (224, True), (240, True)])
def test_scores_and_maps_match_the_original(
    original: SimpleNamespace, size: int, use_hsf: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, path = _original_model(original, size, use_hsf)
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    expected = []
    with torch.no_grad():
        for image in images:
            anomaly_map, score = type(model).forward.__wrapped__(model, image[None], ["candle"], aggregation=True)
            expected.append((float(score[0]), torch.from_numpy(gaussian_filter(anomaly_map[0].numpy(), sigma=4))))

    ours = AdaCLIP(
        backbone="ViT-B-16", pretrained=str(original.tmp / "vit_b_16.pt"), image_size=size, use_hsf=use_hsf,
        official_checkpoint=str(path), object_name="candle",
    ).model.eval()  # fmt: skip
    ours.setup_text("candle")
    if use_hsf:
        monkeypatch.setattr(hsf, "batched_kmeans", _sklearn_kmeans)
    with torch.no_grad():
        out = ours(images)
    for i, (score, anomaly_map) in enumerate(expected):
        assert abs(float(out.pred_score[i]) - score) < 1e-4
        assert (out.anomaly_map[i, 0] - anomaly_map).abs().max() < 1e-4
        assert 0.01 < score < 0.99  # not saturated: the score comparison means something
        assert anomaly_map.std() > 0.01
