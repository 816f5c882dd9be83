# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP against the original code (``zqhang/AnomalyCLIP``), CPU fp32.

Both sides get one random open_clip ViT-B-16 state dict (QuickGELU, as the original's CLIP classes), the same prompt
learner (the original's ``AnomalyCLIP_PromptLearner``, seeded, saved in its checkpoint format and loaded through
``official_checkpoint``) and the same images. The reference numbers come from the original's modules (its CLIP with
``DAPM_replace``, ``encode_text_learn``, ``compute_similarity``, ``get_similarity_map``) with the arithmetic of its
``test.py`` re-stated here, image by image (its score indexing is only right at batch size 1). ``DPAM_layer=12`` puts
the last 11 blocks of ViT-B on the value-value path (layers 2..12), i.e. ``vv_from=2``. The loss test compares
``MapLoss.reference`` with the originals' shared ``loss.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import open_clip
import pytest
import torch
from scipy.ndimage import gaussian_filter

from anomalib_medclip import AnomalyCLIP
from anomalib_medclip.models.components.losses import MapLoss, focal_loss

LAYERS = [6, 12]
DESIGN = {"Prompt_length": 12, "learnabel_text_embedding_depth": 9, "learnabel_text_embedding_length": 4}


@pytest.fixture(scope="module")
def original(original_repo, import_original, tmp_path_factory) -> SimpleNamespace:
    modules = import_original(original_repo("zqhang+AnomalyCLIP"), "AnomalyCLIP_lib", "AnomalyCLIP_lib.build_model",
                              "prompt_ensemble", "loss")  # fmt: skip
    lib, build_model = modules.AnomalyCLIP_lib, modules.AnomalyCLIP_lib_build_model.build_model
    prompt_learner, losses = modules.prompt_ensemble.AnomalyCLIP_PromptLearner, modules.loss
    tmp = tmp_path_factory.mktemp("anomaly_clip_parity")
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).state_dict()
    torch.save(state, tmp / "vit_b_16.pt")
    model = build_model("ViT-B-16", dict(state), DESIGN).eval()
    torch.manual_seed(1)
    learner = prompt_learner(model, DESIGN)
    torch.save({"prompt_learner": learner.state_dict()}, tmp / "prompts.pth")
    model.visual.DAPM_replace(DPAM_layer=12)
    return SimpleNamespace(lib=lib, model=model, learner=learner, losses=losses, tmp=tmp)


def _text(original: SimpleNamespace, learner) -> torch.Tensor:
    with torch.no_grad():
        prompts, tokens, deep = learner(cls_id=None)
        text = original.model.encode_text_learn(prompts, tokens, deep).float()
    text = torch.stack(torch.chunk(text, dim=0, chunks=2), dim=1)
    return text / text.norm(dim=-1, keepdim=True)


def _original_outputs(original: SimpleNamespace, text: torch.Tensor, image: torch.Tensor, size: int):
    """Score and map of one image, as the original's ``test.py`` computes them."""
    lib, visual = original.lib, original.model.visual
    native = visual.positional_embedding.data.clone()  # the original resizes it in place at another size
    with torch.no_grad():
        image_features, patch_features = original.model.encode_image(image, LAYERS, DPAM_layer=12)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        score = (image_features @ text.permute(0, 2, 1) / 0.07).softmax(-1)[:, 0, 1]
        maps = []
        for patch in patch_features:
            patch = patch / patch.norm(dim=-1, keepdim=True)
            similarity, _ = lib.compute_similarity(patch, text[0])
            similarity = lib.get_similarity_map(similarity[:, 1:, :], size)
            maps.append((similarity[..., 1] + 1 - similarity[..., 0]) / 2.0)
        anomaly_map = torch.stack(maps).sum(dim=0)
    visual.positional_embedding.data = native
    return score[0], torch.from_numpy(gaussian_filter(anomaly_map[0].numpy(), sigma=4))


@pytest.mark.parametrize("size", [224, 240])
def test_scores_and_maps_match_the_original(original: SimpleNamespace, size: int) -> None:
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    text = _text(original, original.learner)
    expected = [_original_outputs(original, text, image[None], size) for image in images]

    ours = AnomalyCLIP(
        backbone="ViT-B-16", pretrained=str(original.tmp / "vit_b_16.pt"), image_size=size, activation="quick_gelu",
        map_layers=LAYERS, vv_from=2, official_checkpoint=str(original.tmp / "prompts.pth"),
    ).model.eval()  # fmt: skip
    with torch.no_grad():
        assert (ours.text_features() - text[0]).abs().max() < 1e-5
        out = ours(images)
    for i, (score, anomaly_map) in enumerate(expected):
        assert abs(float(out.pred_score[i] - score)) < 1e-4
        assert (out.anomaly_map[i, 0] - anomaly_map).abs().max() < 1e-4
        assert anomaly_map.std() > 1e-3  # a real map, not constants on both sides


def test_saved_prompts_load_strictly_into_the_original(original: SimpleNamespace) -> None:
    ours = AnomalyCLIP(
        backbone="ViT-B-16", pretrained=str(original.tmp / "vit_b_16.pt"), image_size=224, activation="quick_gelu",
        seed=7,
    ).model.eval()  # fmt: skip
    path = ours.save_official_checkpoint(original.tmp / "ours.pth")
    learner = type(original.learner)(original.model, DESIGN)
    learner.load_state_dict(torch.load(path)["prompt_learner"])  # strict, as the original's test.py
    with torch.no_grad():
        assert (ours.text_features() - _text(original, learner)[0]).abs().max() < 1e-5


def test_reference_losses_match_the_originals(original: SimpleNamespace) -> None:
    """The three originals share this ``loss.py``; MONAI's focal term lacks its 1e-5 label smoothing."""
    generator = torch.Generator().manual_seed(0)
    anomalous = torch.rand(4, 1, 32, 32, generator=generator)
    probs = torch.cat([1 - anomalous, anomalous], dim=1)
    mask = (torch.rand(4, 32, 32, generator=generator) > 0.7).float()
    focal, dice = original.losses.FocalLoss(), original.losses.BinaryDiceLoss()
    one_sided = focal(probs, mask) + dice(probs[:, 1], mask)
    two_sided = one_sided + dice(probs[:, 0], 1 - mask)
    assert float(MapLoss.reference(normal_dice=True)(probs, mask)) == pytest.approx(float(two_sided), rel=1e-3)
    assert float(MapLoss.reference(normal_dice=False)(probs, mask)) == pytest.approx(float(one_sided), rel=1e-3)
    scores = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([0.0, 1.0, 1.0])
    assert float(focal_loss(scores, labels)) == pytest.approx(float(focal(scores, labels[:, None])), rel=1e-3)
