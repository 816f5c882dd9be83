# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFA against the original code (``MediaBrain-SJTU/MVFA-AD`` at a30bf7b), ViT-L-14-336 at 240 px, CPU fp32.

Both sides get one random open_clip ViT-L-14-336 state dict (the original's vendored ``CLIP(**config)`` at 240 px
with the position embedding resized by its own ``resize_pos_embed``, as it does to OpenAI weights), the same adapters
(the original's ``CLIP_Inplanted`` adapters saved in its checkpoint format and loaded through
``official_checkpoint``) and the same ``[0, 1]`` images. The reference numbers come from the original's modules (its
CLIP, ``CLIP_Inplanted``, ``utils.augment``, ``utils.encode_text_with_prompt_ensemble``, ``loss.py``) with the
arithmetic of ``test_zero.py`` / ``test_few.py`` / ``train_few.py`` re-stated here; its fp16 autocast is a context of
those scripts, so fp32 is its own computation on CPU. The few-shot comparisons use ``faithful=True`` (the memory bank
keeps the CLS token of every support view, as the original); one test checks that the default drops exactly that.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from anomalib.data import ImageBatch

from anomalib_medclip import MVFA
from anomalib_medclip.models.mvfa.torch_model import augment_views, fusion_ranges

LAYERS = [6, 12, 18, 24]
SIZE = 240
OBJECT = "Liver"
TOL = 1e-5


@pytest.fixture(scope="module")
def mvfa(original_repo, import_original, cpu_only_to, tmp_path_factory) -> SimpleNamespace:
    root = original_repo("MediaBrain-SJTU+MVFA-AD")
    orig = import_original(root, "CLIP.clip", "CLIP.model", "CLIP.adapter", "utils", "loss")
    tmp = tmp_path_factory.mktemp("mvfa_parity")
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-L-14-336", pretrained=None).state_dict()
    torch.save(state, tmp / "vit_l_14_336.pt")
    clip = orig.CLIP_clip.create_model("ViT-L-14-336", SIZE, pretrained=None, force_image_size=SIZE)
    sized = dict(state)
    orig.CLIP_model.resize_pos_embed(sized, clip)  # what create_model(img_size=240) does to OpenAI weights
    clip.load_state_dict(sized)
    del state, sized
    torch.manual_seed(1)
    model = orig.CLIP_adapter.CLIP_Inplanted(clip_model=clip.eval(), features=LAYERS).eval()
    torch.save(
        {"seg_adapters": model.seg_adapters.state_dict(), "det_adapters": model.det_adapters.state_dict()},
        tmp / "Liver.pth",
    )
    with torch.no_grad():
        text = orig.utils.encode_text_with_prompt_ensemble(clip, OBJECT, "cpu")
    return SimpleNamespace(orig=orig, model=model, text=text, weights=tmp / "vit_l_14_336.pt", tmp=tmp)


def _reset(mvfa: SimpleNamespace) -> None:
    """The original's adapters back to the shared file (a training step or round trip changes them)."""
    mvfa.model.load_state_dict({**mvfa.model.state_dict(), **_adapters(mvfa)})


def _ours(mvfa: SimpleNamespace, trainable: bool = False, **kwargs: object) -> MVFA:
    """Ours with the original's adapters: through ``official_checkpoint``, or loaded into a trainable model."""
    adapters = str(mvfa.tmp / "Liver.pth")
    module = MVFA(
        backbone="ViT-L-14-336", pretrained=str(mvfa.weights), image_size=SIZE, object_name=OBJECT,
        official_checkpoint=None if trainable else adapters, **kwargs,
    )  # fmt: skip
    if trainable:
        module.model.load_official_checkpoint(adapters)
    module.model.setup_text(OBJECT)
    return module


def _upsample_sum(maps: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.interpolate(m, size=SIZE, mode="bilinear", align_corners=True) for m in maps)


def _original_image(mvfa: SimpleNamespace, image: torch.Tensor, seg_mem: list, det_mem: list) -> dict:
    """``test_zero.py`` and ``test_few.py`` (both branches) for one image, in fp32."""
    cos_sim, text = mvfa.orig.utils.cos_sim, mvfa.text
    with torch.no_grad():
        _, seg, det = mvfa.model(image)
        seg, det = [p[0, 1:, :] for p in seg], [p[0, 1:, :] for p in det]
        few = {}
        for name, tokens, memory in (("seg", seg, seg_mem), ("det", det, det_mem)):
            maps = []
            for bank, p in zip(memory, tokens, strict=True):
                cos = cos_sim(bank, p)
                height = int(np.sqrt(cos.shape[1]))
                maps.append(torch.min(1 - cos, 0)[0].reshape(1, 1, height, height))
            few[name] = _upsample_sum(maps)[0]
        det_score = 0
        for p in det:
            p = p / p.norm(dim=-1, keepdim=True)
            det_score += torch.softmax((100.0 * p @ text).unsqueeze(0), dim=-1)[:, :, 1].mean()
        zero_maps = []
        for p in seg:
            p = p / p.norm(dim=-1, keepdim=True)
            logits = (100.0 * p @ text).unsqueeze(0).permute(0, 2, 1)
            grid = int(np.sqrt(logits.shape[-1]))
            up = F.interpolate(logits.reshape(1, 2, grid, grid), size=SIZE, mode="bilinear", align_corners=True)
            zero_maps.append(torch.softmax(up, dim=1)[:, 1:2])
    return {"zero_map": sum(zero_maps)[0], "det": det_score, "few_seg": few["seg"], "few_det": few["det"].mean()}


def _original_memory(mvfa: SimpleNamespace, support: torch.Tensor, keep: slice) -> tuple[list, list]:
    """``train_few.py``'s memory bank: the augmented support views one by one, tokens ``p[0]`` (with CLS)."""
    views, _ = mvfa.orig.utils.augment(support)
    seg_features, det_features = [], []
    with torch.no_grad():
        for view in views:
            _, seg, det = mvfa.model(view[None])
            seg_features.append([p[0, keep].contiguous() for p in seg])
            det_features.append([p[0, keep].contiguous() for p in det])
    seg_mem = [torch.cat([f[i] for f in seg_features]) for i in range(len(LAYERS))]
    det_mem = [torch.cat([f[i] for f in det_features]) for i in range(len(LAYERS))]
    return seg_mem, det_mem


@pytest.fixture(scope="module")
def data() -> SimpleNamespace:
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    support = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    return SimpleNamespace(images=images, support=support)


def test_text_and_augmentation_match(mvfa: SimpleNamespace, data: SimpleNamespace) -> None:
    ours = _ours(mvfa).model
    assert (ours.text_features() - mvfa.text).abs().max() < TOL
    views, _ = mvfa.orig.utils.augment(data.support)
    assert (augment_views(data.support) - views).abs().max() < 1e-6


@pytest.mark.parametrize("faithful", [True, False])
def test_scores_and_maps_match_the_original(mvfa: SimpleNamespace, data: SimpleNamespace, faithful: bool) -> None:
    keep = slice(0, None) if faithful else slice(1, None)  # the original keeps the CLS; the fix drops it
    _reset(mvfa)
    seg_mem, det_mem = _original_memory(mvfa, data.support, keep)
    expected = [_original_image(mvfa, image[None], seg_mem, det_mem) for image in data.images]

    model = _ours(mvfa, faithful=faithful).model
    with torch.no_grad():
        zero = model(data.images)
        model.set_support(data.support)
        model.map_image_score = torch.tensor(True)
        seg_parts = model.raw_scores(data.images)
        model.map_image_score = torch.tensor(False)
        det_parts = model.raw_scores(data.images)
    deltas = {
        "zero-shot score": max(abs(float(zero.pred_score[i] - e["det"])) for i, e in enumerate(expected)),
        "zero-shot map": max(float((zero.anomaly_map[i] - e["zero_map"]).abs().max()) for i, e in enumerate(expected)),
        "few-shot seg map": max(
            float((seg_parts.few_map[i] - e["few_seg"]).abs().max()) for i, e in enumerate(expected)
        ),
        "few-shot det score": max(abs(float(det_parts.few_score[i] - e["few_det"])) for i, e in enumerate(expected)),
    }
    print(f"MVFA parity faithful={faithful}: {deltas}")  # recorded in models/mvfa/README.md
    for i, e in enumerate(expected):
        assert abs(float(zero.pred_score[i] - e["det"])) < TOL
        assert (zero.anomaly_map[i] - e["zero_map"]).abs().max() < TOL
        assert (seg_parts.few_map[i] - e["few_seg"]).abs().max() < TOL
        assert abs(float(det_parts.few_score[i] - e["few_det"])) < TOL
    assert float(seg_parts.few_map.max()) > 0.05  # a real few-shot contribution

    # test_few.py's fusion: min-max over the tested images, then 0.5 / 0.5 (seg: max of the map; det: the scores)
    def minmax(x: torch.Tensor) -> torch.Tensor:
        return (x - x.min()) / (x.max() - x.min())

    seg_map = 0.5 * minmax(torch.stack([e["zero_map"] for e in expected])) + 0.5 * minmax(
        torch.stack([e["few_seg"] for e in expected])
    )
    det_score = 0.5 * minmax(torch.stack([e["det"] for e in expected])) + 0.5 * minmax(
        torch.stack([e["few_det"] for e in expected])
    )
    model.set_score_ranges(fusion_ranges([seg_parts, det_parts]))
    seg_fused, det_fused = model.fuse(seg_parts), model.fuse(det_parts)
    # min-max over a few images magnifies the parts' float differences by 1 / (max - min) (both sides alike)
    gain = float(1 / (model.score_ranges[:, 1] - model.score_ranges[:, 0]).min())
    assert (seg_fused.anomaly_map - seg_map).abs().max() < TOL * max(1.0, gain)
    assert (seg_fused.pred_score - seg_map.flatten(1).amax(dim=1)).abs().max() < TOL * max(1.0, gain)
    assert (det_fused.pred_score - det_score).abs().max() < TOL * max(1.0, gain), f"normalisation gain {gain:.1f}"
    print(
        f"MVFA parity fused (gain {gain:.1f}): map {float((seg_fused.anomaly_map - seg_map).abs().max()):.2e}, "
        f"det score {float((det_fused.pred_score - det_score).abs().max()):.2e}"
    )


def test_faithful_memory_differs_only_by_the_cls_token(mvfa: SimpleNamespace, data: SimpleNamespace) -> None:
    faithful, fixed = _ours(mvfa, faithful=True).model, _ours(mvfa).model
    for model in (faithful, fixed):
        model.set_support(data.support)
    with torch.no_grad():
        (seg_a, det_a), (seg_b, det_b) = faithful.memory(), fixed.memory()
    patches = seg_b[0].shape[0] // 11
    for a, b in zip([*seg_a, *det_a], [*seg_b, *det_b], strict=True):
        assert a.shape[0] == b.shape[0] + 11  # one CLS token per augmented view
        a = a.reshape(11, patches + 1, -1)
        assert torch.equal(a[:, 1:].reshape(-1, a.shape[-1]), b)


@pytest.mark.parametrize("with_mask", [True, False])
def test_one_training_step_matches_the_original(mvfa: SimpleNamespace, with_mask: bool) -> None:
    """``train_few.py``'s step (seg category: seg + det loss, both Adams; else det loss, det Adam only)."""
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, 60:150, 80:170] = 1
    label = torch.tensor([1.0])

    _reset(mvfa)
    original = mvfa.model
    seg_opt = torch.optim.Adam(list(original.seg_adapters.parameters()), lr=1e-3, betas=(0.5, 0.999))
    det_opt = torch.optim.Adam(list(original.det_adapters.parameters()), lr=1e-3, betas=(0.5, 0.999))
    focal, dice, bce = mvfa.orig.loss.FocalLoss(), mvfa.orig.loss.BinaryDiceLoss(), torch.nn.BCEWithLogitsLoss()
    _, seg, det = original(image)
    seg, det = [p[0, 1:, :] for p in seg], [p[0, 1:, :] for p in det]
    loss = 0
    for p in det:
        p = p / p.norm(dim=-1, keepdim=True)
        loss += bce(torch.softmax((100.0 * p @ mvfa.text).unsqueeze(0), dim=-1)[:, :, 1].mean(dim=-1), label)
    if with_mask:
        for p in seg:
            p = p / p.norm(dim=-1, keepdim=True)
            logits = (100.0 * p @ mvfa.text).unsqueeze(0).permute(0, 2, 1)
            grid = int(math.sqrt(logits.shape[-1]))
            up = F.interpolate(logits.reshape(1, 2, grid, grid), size=SIZE, mode="bilinear", align_corners=True)
            probs = torch.softmax(up, dim=1)
            loss += focal(probs, mask) + dice(probs[:, 1], mask)
    seg_opt.zero_grad()
    det_opt.zero_grad()
    loss.backward()
    # the last layer's fc2 outputs only feed the pooled token, which no loss uses: no gradient on either side
    expected_grads = {n: p.grad for n, p in original.named_parameters() if "adapters" in n}
    if with_mask:
        seg_opt.step()
    det_opt.step()
    expected_state = {n: p.detach().clone() for n, p in original.named_parameters() if "adapters" in n}

    module = _ours(mvfa, trainable=True, few_shot=False)
    optimizer = module.configure_optimizers()
    batch = ImageBatch(image=image, gt_label=label.long(), gt_mask=mask.bool() if with_mask else None)
    ours_loss = module.training_step(batch)
    assert abs(float(ours_loss - loss)) < TOL * max(1.0, abs(float(loss)))
    optimizer.zero_grad()
    ours_loss.backward()
    grads = {n.removeprefix("model."): p.grad for n, p in module.named_parameters() if "adapters" in n}
    assert {n for n, g in grads.items() if g is None} == {n for n, g in expected_grads.items() if g is None}
    relative = max(
        float((grads[n] - g).abs().max() / g.abs().max())
        for n, g in expected_grads.items()
        if g is not None and g.any()
    )
    print(
        f"MVFA parity step with_mask={with_mask}: loss {float(ours_loss - loss):.2e}, max relative grad {relative:.2e}"
    )
    for name, grad in expected_grads.items():
        if grad is not None and grad.abs().max() > 0:
            assert (grads[name] - grad).abs().max() <= TOL * grad.abs().max(), name
    module.on_before_optimizer_step(optimizer)
    optimizer.step()
    state = {n.removeprefix("model."): p.detach() for n, p in module.named_parameters() if "adapters" in n}
    for name, value in expected_state.items():
        grad = expected_grads[name]
        if grad is None:
            assert torch.equal(state[name], value), name
            continue
        # Adam's first step is lr * sign(g) where |g| >> eps: compare where the gradient is well resolved (entries
        # near eps = 1e-8 flip with any rounding of g, on either side)
        resolved = grad.abs() > 1e-3 * grad.abs().max()
        assert ((state[name] - value)[resolved]).abs().max() <= TOL * 1e-3, name  # lr 1e-3
    moved = {n for n in expected_state if not torch.equal(expected_state[n], _adapters(mvfa)[n])}
    assert any(n.startswith("seg") for n in moved) == with_mask  # det-only batches leave the seg adapters


def _adapters(mvfa: SimpleNamespace) -> dict[str, torch.Tensor]:
    saved = torch.load(mvfa.tmp / "Liver.pth", weights_only=True)
    return {f"{group}.{key}": value for group, state in saved.items() for key, value in state.items()}


def test_checkpoint_round_trip_in_the_original_format(mvfa: SimpleNamespace, data: SimpleNamespace) -> None:
    ours = _ours(mvfa).model
    with torch.no_grad():
        for parameter in ours.seg_adapters.parameters():
            parameter.mul_(1.5)  # differs from the file it was loaded from
    path = ours.save_official_checkpoint(mvfa.tmp / "ours.pth")
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == {"seg_adapters", "det_adapters"}
    original = mvfa.model
    original.seg_adapters.load_state_dict(checkpoint["seg_adapters"])  # the original's loading code (strict)
    original.det_adapters.load_state_dict(checkpoint["det_adapters"])
    with torch.no_grad():
        _, seg, det = original(data.images[:1])
        theirs = [p[:, 1:] for p in seg + det]
        mine_seg, mine_det = ours.encode(data.images[:1])
    for a, b in zip([p[:, 1:] for p in mine_seg + mine_det], theirs, strict=True):
        assert (a - b).abs().max() < TOL
