# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFAModel against independent computations: the adapted tower, maps, scores, memory bank, official files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.mvfa.torch_model import MVFAModel, RawScores, augment_views, fusion_ranges

LAYERS = (3, 6, 9, 12)
SIZE = 32


@pytest.fixture(scope="module")
def backbone() -> CLIPBackbone:
    return CLIPBackbone("ViT-tiny-test", None, image_size=SIZE)


def _model(backbone: CLIPBackbone, faithful: bool = False) -> MVFAModel:
    torch.manual_seed(0)
    model = MVFAModel(backbone, LAYERS, faithful=faithful)
    for adapter in [*model.seg_adapters, *model.det_adapters]:  # larger weights: maps far from uniform
        for linear in (adapter.fc1[0], adapter.fc2[0]):
            torch.nn.init.normal_(linear.weight, std=0.3)
    model.setup_text("toy")
    return model.eval()


@pytest.fixture(scope="module")
def model(backbone: CLIPBackbone) -> MVFAModel:
    return _model(backbone)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _reference_tokens(model: MVFAModel, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The adapted tower written out on open_clip's modules (no block hooks): seg/det tokens per layer."""
    visual = model.backbone.clip.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(len(images), 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    seg, det = [], []
    for layer, block in enumerate(visual.transformer.resblocks, start=1):
        x = block(x)
        if layer in LAYERS:
            i = LAYERS.index(layer)
            s_hidden = F.leaky_relu(x @ model.seg_adapters[i].fc1[0].weight.T)
            d_hidden = F.leaky_relu(x @ model.det_adapters[i].fc1[0].weight.T)
            s_out = F.leaky_relu(s_hidden @ model.seg_adapters[i].fc2[0].weight.T)
            d_out = F.leaky_relu(d_hidden @ model.det_adapters[i].fc2[0].weight.T)
            x = 0.8 * x + 0.1 * s_out + 0.1 * d_out
            seg.append(s_hidden)
            det.append(d_hidden)
    return seg, det


def test_adapter_widths_follow_the_backbone(model: MVFAModel) -> None:
    backbone = model.backbone
    weight = model.seg_adapters[0].fc1[0].weight
    assert weight.shape == (backbone.embed_dim, backbone.visual_width)
    assert model.seg_adapters[0].fc1[0].bias is None
    assert len(model.det_adapters) == len(LAYERS)
    with pytest.raises(ValueError, match="ascending"):
        MVFAModel(backbone, (6, 3))


def test_tokens_maps_and_scores_equal_independent_computation(model: MVFAModel) -> None:
    images = _images(3, 0)
    text = model.text_features()
    with torch.no_grad():
        seg, det = model.encode(images)
        ref_seg, ref_det = _reference_tokens(model, images)
        out = model(images)
    for ours, ref in zip(seg + det, ref_seg + ref_det, strict=True):
        assert torch.allclose(ours, ref, atol=1e-5)
    expected_map, expected_score = torch.zeros(3, 1, SIZE, SIZE), torch.zeros(3)
    grid = model.backbone.grid_size
    for s, d in zip(ref_seg, ref_det, strict=True):
        logits = 100 * F.normalize(s[:, 1:], dim=-1) @ text
        margin = (logits[..., 1] - logits[..., 0]).reshape(3, 1, grid, grid)  # softmax of two = sigmoid of margin
        expected_map += F.interpolate(margin, size=SIZE, mode="bilinear", align_corners=True).sigmoid()
        det_logits = 100 * F.normalize(d[:, 1:], dim=-1) @ text
        expected_score += (det_logits[..., 1] - det_logits[..., 0]).sigmoid().mean(dim=1)
    assert out.anomaly_map.shape == (3, 1, SIZE, SIZE)
    assert out.pred_score.shape == (3,)
    assert torch.allclose(out.anomaly_map, expected_map, atol=1e-5)
    assert torch.allclose(out.pred_score, expected_score, atol=1e-5)
    assert expected_map.std() > 1e-3  # not a constant map


def test_images_one_patch_larger_are_cropped(model: MVFAModel) -> None:
    images = torch.rand(2, 3, SIZE + 3, SIZE + 3)
    with torch.no_grad():
        big, cropped = model.encode(images), model.encode(images[..., :SIZE, :SIZE])
        out = model(images)
    assert all(torch.equal(a, b) for a, b in zip(big[0] + big[1], cropped[0] + cropped[1], strict=True))
    assert out.anomaly_map.shape == (2, 1, SIZE + 3, SIZE + 3)


def test_translation_and_flip_views_equal_numpy() -> None:
    image = torch.rand(1, 1, 40, 40)
    views = augment_views(image)
    assert views.shape == (11, 1, 40, 40)
    padded = np.pad(image[0, 0].numpy(), 2, mode="symmetric")  # grid_sample's reflection = half-sample symmetric
    shift = {(0.1, 0.1): (4, 4), (-0.1, 0.1): (0, 4), (-0.1, -0.1): (0, 0), (0.1, -0.1): (4, 0)}  # 0.1 * 40 / 2 = 2 px
    for index, (dx, dy) in enumerate(shift.values(), start=5):
        np.testing.assert_allclose(views[index, 0].numpy(), padded[dy : dy + 40, dx : dx + 40], atol=1e-5)
    assert torch.equal(views[9], image[0].flip(-1))
    assert torch.equal(views[10], image[0].flip(-2))
    assert torch.equal(views[0], image[0])


@pytest.mark.parametrize("faithful", [False, True])
def test_memory_bank_equals_scipy_nearest_neighbour(backbone: CLIPBackbone, faithful: bool) -> None:
    model = _model(backbone, faithful=faithful)
    support, images = _images(2, 1), _images(3, 2)
    model.set_support(support)
    with torch.no_grad():
        ref_seg, ref_det = _reference_tokens(model, augment_views(support))
        test_seg, test_det = _reference_tokens(model, images)
        model.map_image_score = torch.tensor(True)
        seg_raw = model.raw_scores(images)
        model.map_image_score = torch.tensor(False)
        det_raw = model.raw_scores(images)
    keep = slice(0, None) if faithful else slice(1, None)
    grid = model.backbone.grid_size
    expected = {}
    for name, bank, tokens in (("seg", ref_seg, test_seg), ("det", ref_det, test_det)):
        total = torch.zeros(3, 1, SIZE, SIZE)
        for memory, layer in zip(bank, tokens, strict=True):
            memory = memory[:, keep].reshape(-1, memory.shape[-1]).numpy().astype(np.float64)
            for i in range(3):
                distance = cdist(layer[i, 1:].numpy().astype(np.float64), memory, metric="cosine").min(axis=1)
                patch = torch.tensor(distance, dtype=torch.float32).reshape(1, 1, grid, grid)
                total[i] += F.interpolate(patch, size=SIZE, mode="bilinear", align_corners=True)[0]
        expected[name] = total
    assert torch.allclose(seg_raw.few_map, expected["seg"], atol=1e-5)
    assert torch.allclose(det_raw.few_score, expected["det"].mean(dim=(1, 2, 3)), atol=1e-5)
    assert seg_raw.few_score is None
    assert det_raw.few_map is None
    assert model.memory()[0][0].shape[0] == 22 * (grid * grid + faithful)  # 2 images x 11 views x (P [+ CLS])


def test_faithful_and_fixed_differ_only_in_the_memory_bank(backbone: CLIPBackbone) -> None:
    faithful, fixed = _model(backbone, faithful=True), _model(backbone)
    images = _images(2, 3)
    with torch.no_grad():
        assert torch.equal(faithful(images).anomaly_map, fixed(images).anomaly_map)  # zero-shot: identical
        for model in (faithful, fixed):
            model.set_support(_images(1, 4))
            model.map_image_score = torch.tensor(True)
        a, b = faithful.raw_scores(images), fixed.raw_scores(images)
    assert torch.equal(a.zero_map, b.zero_map)
    assert (a.few_map <= b.few_map + 1e-6).all()  # a bank with more rows can only lower the distances
    grid = faithful.backbone.grid_size
    for with_cls, without in zip(
        faithful.memory()[0] + faithful.memory()[1], fixed.memory()[0] + fixed.memory()[1], strict=True
    ):
        rows = with_cls.reshape(11, grid * grid + 1, -1)  # view-major: per view its CLS, then its patches
        assert torch.equal(rows[:, 1:].reshape(-1, rows.shape[-1]), without)


@pytest.mark.parametrize("map_score", [True, False])
def test_batch_equals_singles(backbone: CLIPBackbone, map_score: bool) -> None:
    model = _model(backbone)
    images = _images(4, 5)
    with torch.no_grad():
        zero = model(images)
        zero_singles = [model(image[None]) for image in images]
        model.set_support(_images(2, 6))
        model.map_image_score = torch.tensor(map_score)
        model.set_score_ranges(fusion_ranges([model.raw_scores(images)]))
        few = model(images)
        few_singles = [model(image[None]) for image in images]
    for batch, singles in ((zero, zero_singles), (few, few_singles)):
        assert torch.allclose(batch.pred_score, torch.cat([s.pred_score for s in singles]), atol=1e-5)
        assert torch.allclose(batch.anomaly_map, torch.cat([s.anomaly_map for s in singles]), atol=1e-5)


def test_fusion_is_min_max_of_the_parts(model: MVFAModel) -> None:
    raw = RawScores(
        torch.tensor([1.0, 3.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2), torch.tensor([0.2, 0.4]),
        torch.tensor([5.0, 7.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2), None,
    )  # fmt: skip
    model.set_score_ranges(torch.tensor([[1.0, 3.0], [5.0, 9.0], [0.0, 1.0], [0.0, 1.0]]))
    out = model.fuse(raw)
    assert torch.allclose(out.pred_score, torch.tensor([0.0, 0.5 + 0.25]))
    det = model.fuse(raw._replace(few_map=None, few_score=torch.tensor([0.5, 1.0])))
    assert torch.allclose(det.pred_score, torch.tensor([0.1 + 0.25, 0.2 + 0.5]))
    with pytest.raises(ValueError, match="few_map"):
        fusion_ranges([raw._replace(few_map=torch.ones(2, 1, 2, 2))])
    model.score_ranges = torch.empty(0)


def test_official_checkpoint_round_trip_and_strict_errors(
    model: MVFAModel, backbone: CLIPBackbone, tmp_path: Path
) -> None:
    path = model.save_official_checkpoint(tmp_path / "Liver.pth")
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"seg_adapters", "det_adapters"}
    assert set(saved["seg_adapters"]) == {f"{i}.{fc}.0.weight" for i in range(4) for fc in ("fc1", "fc2")}
    other = MVFAModel(backbone, LAYERS)
    other.load_official_checkpoint(path)
    other.setup_text("toy")
    images = _images(2, 7)
    with torch.no_grad():
        assert torch.equal(other(images).anomaly_map, model(images).anomaly_map)

    def broken(change) -> Path:
        content = torch.load(path, weights_only=True)
        change(content)
        torch.save(content, tmp_path / "broken.pth")
        return tmp_path / "broken.pth"

    with pytest.raises(ValueError, match=r"missing \['seg_adapters.3.fc2.0.weight'\]"):
        other.load_official_checkpoint(broken(lambda c: c["seg_adapters"].pop("3.fc2.0.weight")))
    with pytest.raises(ValueError, match=r"unexpected \['det_adapters.4.fc1.0.weight'\]"):
        other.load_official_checkpoint(broken(lambda c: c["det_adapters"].update({"4.fc1.0.weight": torch.zeros(1)})))
    with pytest.raises(ValueError, match=r"\['det_adapters.0.fc1.0.weight'\] has shape \(768, 1024\)"):
        other.load_official_checkpoint(
            broken(lambda c: c["det_adapters"].update({"0.fc1.0.weight": torch.zeros(768, 1024)}))
        )
    with pytest.raises(ValueError, match="det_adapters"):
        other.load_official_checkpoint(broken(lambda c: c.pop("det_adapters")))
    with pytest.raises(FileNotFoundError, match=r"nothing\.pth"):
        other.load_official_checkpoint(tmp_path / "nothing.pth")


def test_state_dict_round_trip_keeps_support_and_ranges(backbone: CLIPBackbone) -> None:
    model = _model(backbone)
    model.set_support(_images(2, 8))
    model.map_image_score = torch.tensor(True)
    images = _images(3, 9)
    with torch.no_grad():
        model.set_score_ranges(fusion_ranges([model.raw_scores(images)]))
        expected = model(images)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    fresh = MVFAModel(backbone, LAYERS)
    fresh.load_state_dict(state, strict=False)
    fresh.setup_text("toy")
    with torch.no_grad():
        out = fresh(images)
    assert fresh.few_shot
    assert bool(fresh.map_image_score)
    assert torch.equal(out.anomaly_map, expected.anomaly_map)
    assert torch.equal(out.pred_score, expected.pred_score)
