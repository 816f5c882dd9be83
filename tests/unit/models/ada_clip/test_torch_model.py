# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIPModel against direct open_clip computations: per-image prompts, HSF, batching, gradients, official files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.ada_clip import AdaCLIPModel
from anomalib_medclip.models.ada_clip.hsf import batched_kmeans, hybrid_semantic_fusion
from anomalib_medclip.prompts import state_sentences

LAYERS = (3, 6, 9, 12)


def _model(backbone: CLIPBackbone, **kwargs: object) -> AdaCLIPModel:
    torch.manual_seed(0)
    model = AdaCLIPModel(backbone, LAYERS, **kwargs)
    with torch.no_grad():  # larger prompts than the N(0, 0.02) init make every part matter
        for name, p in model.named_parameters():
            if "prompt" in name and not name.startswith("backbone."):
                p.normal_(std=0.5)
    model.setup_text("toy")
    return model.eval()


@pytest.fixture(scope="module")
def model(small_backbone: CLIPBackbone) -> AdaCLIPModel:
    return _model(small_backbone)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _reference(model: AdaCLIPModel, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Score and pre-smoothing map of one image from open_clip's modules, prompts written in by hand, no HSF."""
    clip, visual = model.backbone.clip, model.backbone.clip.visual
    pooled = clip.encode_image(image)
    dyn_v = torch.stack([h(pooled) for h in model.dynamic_visual_prompt_generator.head], dim=1)
    dyn_t = torch.stack([h(pooled) for h in model.dynamic_text_prompt_generator.head], dim=1)
    x = visual.ln_pre(model.backbone.embed_patches(image))
    taps = []
    for layer, block in enumerate(visual.transformer.resblocks, start=1):
        if layer <= 4:
            prompt = (dyn_v + model.visual_prompter.static_prompts[layer - 1]).half().float()
            x = torch.cat([x[:, :5], prompt], dim=1)
        x = block(x)
        if layer in LAYERS:
            taps.append(x[:, 1:5])
    image_feature = F.normalize(model.cls_token_layer.head[0](visual.ln_post(x[:, 0]) @ visual.proj), dim=-1)
    tokens = model.tokens
    t = clip.token_embedding(tokens) + clip.positional_embedding
    for layer, block in enumerate(clip.transformer.resblocks, start=1):
        if 2 <= layer <= 4:
            t = torch.cat([t[:, :1], (dyn_t + model.text_prompter.static_prompts[layer - 1]).half().float().expand(
                len(tokens), -1, -1), t[:, 6:]], dim=1)  # fmt: skip
        t = block(t, attn_mask=clip.attn_mask)
    sentences = F.normalize(
        clip.ln_final(t)[torch.arange(len(tokens)), tokens.argmax(-1)] @ clip.text_projection, dim=-1
    )
    text = torch.stack([F.normalize(g.mean(0), dim=-1) for g in (sentences[:28], sentences[28:])], dim=1)  # (D, 2)
    score = (100 * image_feature @ text).softmax(-1)[0, 1]
    logits = [
        100 * F.normalize(h(tok), dim=-1) @ text for h, tok in zip(model.patch_token_layer.head, taps, strict=True)
    ]
    up = [F.interpolate(lg.transpose(1, 2).reshape(1, 2, 2, 2), size=32, mode="bilinear", align_corners=True)
          for lg in logits]  # fmt: skip
    return score, torch.stack(up).mean(0).softmax(1)[:, 1]


def test_sentences() -> None:
    normal, abnormal = state_sentences("brain-MRI scan")
    assert (len(normal), len(abnormal)) == (28, 20)
    assert normal[0] == "a bad photo of a brain MRI scan."
    assert abnormal[-1] == "a cropped photo of the brain MRI scan with damage."
    with pytest.raises(ValueError, match="non-empty"):
        state_sentences("")


def test_scores_and_maps_equal_direct_computation(small_backbone: CLIPBackbone) -> None:
    model = _model(small_backbone, use_hsf=False, smoothing_sigma=0.0)
    images = _images(2, 0)
    with torch.no_grad():
        out = model(images)
        expected = [_reference(model, image[None]) for image in images]
    for i, (score, anomaly_map) in enumerate(expected):
        assert float(out.pred_score[i]) == pytest.approx(float(score), abs=1e-5)
        assert torch.allclose(out.anomaly_map[i], anomaly_map, atol=1e-5)
    assert float(out.pred_score.min()) > 0.01
    assert float(out.pred_score.max()) < 0.99
    assert torch.stack([m for _, m in expected]).std() > 0.01


@pytest.mark.parametrize("use_hsf", [False, True])
def test_batch_equals_single_images(small_backbone: CLIPBackbone, use_hsf: bool) -> None:
    model = _model(small_backbone, use_hsf=use_hsf)
    images = _images(4, 5)
    with torch.no_grad():
        batch = model(images)
        singles = [model(image[None]) for image in images]
    assert torch.allclose(batch.pred_score, torch.cat([s.pred_score for s in singles]), atol=1e-5)
    assert torch.allclose(batch.anomaly_map, torch.cat([s.anomaly_map for s in singles]), atol=1e-5)


def test_text_features_depend_on_the_image(model: AdaCLIPModel) -> None:
    with torch.no_grad():
        _, dynamic = model._dynamic_prompts(_images(2, 1))
        text = model.text_features(dynamic)
    assert text.shape == (2, model.backbone.embed_dim, 2)
    assert (text[0] - text[1]).abs().max() > 1e-3


def test_gradients_reach_every_learnable_part(small_backbone: CLIPBackbone) -> None:
    model = _model(small_backbone).train()
    probs, maps = model.forward_train(_images(2, 6))
    assert probs.shape == (2, 2)
    assert [tuple(m.shape) for m in maps] == [(2, 2, 32, 32)] * 4
    (probs[:, 1].sum() + sum(m[:, 1].mean() for m in maps)).backward()
    learnable = {name for name, p in model.named_parameters() if p.requires_grad}
    moved = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    # as in the original, the text tower's first static prompt is never used (layer 1 keeps its word embeddings)
    assert moved == learnable - {"text_prompter.static_prompts.0"}
    assert not any(p.requires_grad for p in small_backbone.parameters())


def test_switches_change_the_parameter_count(small_backbone: CLIPBackbone) -> None:
    def count(**kwargs: object) -> int:
        return sum(p.numel() for p in AdaCLIPModel(small_backbone, LAYERS, **kwargs).parameters() if p.requires_grad)

    dyn = 5 * (512 * 768 + 768) + 5 * (512 * 512 + 512)
    heads = 4 * (768 * 512 + 512) + 512 * 512 + 512
    assert count() == 4 * 5 * 768 + 4 * 5 * 512 + dyn + heads
    assert count(prompting_type="S") == 4 * 5 * 768 + 4 * 5 * 512 + heads
    assert count(prompting_branch="V", prompting_type="D") == dyn + heads
    with pytest.raises(ValueError, match="prompting_type must be"):
        AdaCLIPModel(small_backbone, LAYERS, prompting_type="X")


def test_kmeans_recovers_separated_clusters_like_sklearn() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=generator) * 10
    points = (centres.repeat_interleave(20, dim=0) + torch.randn(100, 16, generator=generator))[torch.randperm(100)]
    ours = batched_kmeans(points[None], 5)[0].numpy()
    theirs = KMeans(n_clusters=5, n_init="auto", random_state=0).fit_predict(points.numpy())
    pairs = {(a, b) for a, b in zip(ours, theirs, strict=True)}
    assert len(pairs) == 5  # the same partition up to a renaming of the clusters


def test_kmeans_inertia_is_as_good_as_sklearn_and_batch_invariant() -> None:
    x = torch.randn(6, 100, 64, generator=torch.Generator().manual_seed(1))
    labels = batched_kmeans(x, 20)
    assert torch.equal(batched_kmeans(x[2:3], 20)[0], labels[2])

    def inertia(points: np.ndarray, assignment: np.ndarray) -> float:
        return sum(((points[assignment == c] - points[assignment == c].mean(0)) ** 2).sum() for c in set(assignment))

    ours = [inertia(xi.numpy(), li.numpy()) for xi, li in zip(x, labels, strict=True)]
    theirs = [KMeans(n_clusters=20, n_init="auto", random_state=0).fit(xi.numpy()).inertia_ for xi in x]
    assert np.mean(ours) < 1.05 * np.mean(theirs)


def test_hsf_is_the_mean_of_cluster_means() -> None:
    generator = torch.Generator().manual_seed(2)
    tokens = [F.normalize(torch.randn(1, 9, 8, generator=generator), dim=-1) for _ in range(2)]
    logits = [torch.randn(1, 9, 2, generator=generator) for _ in range(2)]
    fused = hybrid_semantic_fusion(tokens, logits, k_clusters=1)  # top 5 patches, one cluster
    top = torch.stack(logits).mean(0).softmax(-1)[0, :, 1].topk(5).indices
    expected = F.normalize(torch.cat([t[0, top] for t in tokens]).mean(0), dim=-1)
    assert torch.allclose(fused[0], expected, atol=1e-6)


def test_official_checkpoint_round_trip_and_errors(model: AdaCLIPModel, tmp_path: Path) -> None:
    path = model.save_official_checkpoint(tmp_path / "pretrained_all.pth")
    state = torch.load(path, weights_only=True)
    assert "clip_model.dynamic_text_prompt_generator.head.4.weight" in state
    assert "clip_model.visual_prompter.static_prompts.3" in state
    fresh = AdaCLIPModel(model.backbone, LAYERS)
    fresh.load_official_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True))
    partial = {k: v for k, v in state.items() if "cls_token_layer" not in k}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"missing \['clip_model.cls_token_layer.head.0.bias'"):
        fresh.load_official_checkpoint(tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"unexpected \['clip_model.dynamic_text_prompt_generator"):
        AdaCLIPModel(model.backbone, LAYERS, prompting_type="S").load_official_checkpoint(path)
    torch.save({"prompt_learner": {}}, tmp_path / "acl.pth")
    with pytest.raises(ValueError, match=r"acl\.pth' is not an AdaCLIP checkpoint: expected a flat dict of tensors"):
        fresh.load_official_checkpoint(tmp_path / "acl.pth")


def test_kmeans_while_exporting_runs_every_iteration_to_the_same_labels(monkeypatch) -> None:
    x = torch.randn(4, 100, 64, generator=torch.Generator().manual_seed(2))
    eager = batched_kmeans(x, 20)
    iterations = []
    real_one_hot = torch.nn.functional.one_hot
    monkeypatch.setattr(torch.nn.functional, "one_hot", lambda *a: iterations.append(1) or real_one_hot(*a))
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert torch.equal(batched_kmeans(x, 20, max_iter=30), eager)
    assert len(iterations) == 30  # no data-dependent stop in a graph
