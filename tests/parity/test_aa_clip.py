# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AACLIP against the original code (``Mwxinnn/AA-CLIP``, read at commit 53db195), CPU fp32, in its setting.

The original's setting: ViT-L-14-336 at 518 px, built as ``CLIP(**config)`` (``nn.GELU``) with the positional
embedding resized by its ``resize_pos_embed`` (bicubic with antialias), adapters without the ``--relu`` flag (as its
scripts and released log). Both sides get one random open_clip ViT-L-14-336 state dict and the same adapters (the
original's ``AdaptedCLIP``, seeded, saved in its checkpoint format and loaded strictly through
``load_official_checkpoint``). The reference numbers come from the original's own functions: ``AdaptedCLIP`` and
``forward_utils`` (text anchors, test-time maps) and ``train.py``'s ``train_text_adapter`` / ``train_image_adapter``
run for one step on one batch (the gradients they leave on the adapters are compared); only the map-sum of
``test.py:get_predictions`` and the teacher tokens of ``train_text_adapter`` are re-stated here. The image score is
compared with the max of the map: the original's "Medical" image score after its dataset-wide min-max scaling, which
is monotone and leaves AUROC unchanged.

Heavy: three ViT-L copies (the original's CLIP, its teacher without text tower, ours) and backward passes at 518 px,
about 8 GB of memory; run it alone (minutes of CPU on 2 cores, more on a shared machine).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from types import ModuleType, SimpleNamespace

import open_clip
import pytest
import torch

from anomalib_medclip import AACLIP

SIZE = 518
DATASET, OBJECT = "Brain", "scan"  # the original's medical sets name the object "scan" (its REAL_NAMES)
TOLERANCE = 1e-5


def _build_clip(modules: SimpleNamespace, config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The original's CLIP at 518 px with ``state``, as its ``create_model`` builds it for OpenAI weights."""
    clip = modules.model_model.CLIP(**config)
    sized = dict(state)
    modules.model_model.resize_pos_embed(sized, clip)
    clip.load_state_dict(sized, strict=True)
    return clip.eval()


@pytest.fixture(scope="module")
def original(original_repo, import_original, tmp_path_factory) -> SimpleNamespace:
    root = original_repo("Mwxinnn+AA-CLIP")
    patch = pytest.MonkeyPatch()
    patch.setitem(sys.modules, "ipdb", ModuleType("ipdb"))  # imported (never used) by its modules
    threads, environ = torch.get_num_threads(), dict(os.environ)
    modules = import_original(root, "model.model", "model.adapter", "forward_utils", "train")
    torch.set_num_threads(threads)  # its train.py sets 4 threads and thread variables at import
    os.environ.clear()
    os.environ.update(environ)
    tmp = tmp_path_factory.mktemp("aa_clip_parity")
    config = json.loads((root / "model" / "model_configs" / "ViT-L-14-336.json").read_text())
    config["vision_cfg"]["image_size"] = SIZE
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-L-14-336", pretrained=None).state_dict()
    torch.save(state, tmp / "vit_l_14_336.pt")
    clip = _build_clip(modules, config, state)
    teacher = _build_clip(modules, config, state)
    teacher.visual.DAPM_replace(DPAM_layer=20)  # train.py's clip_surgery
    del state, teacher.transformer, teacher.token_embedding  # its text tower is never used
    # The original never freezes CLIP, so its backward also fills gradients of every CLIP weight; they do not change
    # the adapters' gradients, and freezing them here saves ~2 GB.
    clip.requires_grad_(False)
    teacher.requires_grad_(False)
    torch.manual_seed(1)
    adapted = modules.model_adapter.AdaptedCLIP(clip, relu=False).eval()
    torch.save({"epoch": 5, "text_adapter": adapted.text_adapter.state_dict()}, tmp / "text_adapter.pth")
    torch.save({"epoch": 1, "image_adapter": adapted.image_adapter.state_dict()}, tmp / "image_adapter_1.pth")

    ours = AACLIP(
        backbone="ViT-L-14-336", pretrained=str(tmp / "vit_l_14_336.pt"), image_size=SIZE, object_name=OBJECT,
        official_checkpoint=str(tmp / "image_adapter_1.pth"),
    )  # fmt: skip
    ours.model.setup_text(OBJECT)
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, SIZE, SIZE, generator=generator)
    masks = torch.zeros(2, 1, SIZE, SIZE)
    masks[1, :, 100:260, 150:330] = 1.0
    yield SimpleNamespace(
        modules=modules, adapted=adapted, teacher=teacher, ours=ours, tmp=tmp, images=images, masks=masks,
        labels=torch.tensor([0, 1]),
    )  # fmt: skip
    patch.undo()


def _relative(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(ours, reference, strict=True))


def _original_grads(module: torch.nn.Module, run) -> list[torch.Tensor]:
    """Gradients one step of ``run`` leaves on ``module``'s parameters; the step itself is undone."""
    before = {k: v.clone() for k, v in module.state_dict().items()}
    run()
    grads = [p.grad.clone() for p in module.parameters()]
    module.load_state_dict(before)
    module.zero_grad(set_to_none=True)
    return grads


def test_scores_maps_and_anchors_match_the_original(original: SimpleNamespace) -> None:
    fu, adapted = original.modules.forward_utils, original.adapted
    with torch.no_grad():
        text = fu.get_adapted_text_embedding(adapted, DATASET, "cpu")[DATASET]  # (D, 2)
        seg, _ = adapted(original.images)
        maps = [fu.calculate_similarity_map(f, text, SIZE, test=True, domain="Medical") for f in seg]
        expected = torch.cat(maps, dim=1).sum(dim=1)  # test.py:get_predictions
        model = original.ours.model.eval()
        assert (model.text_features() - text.T).abs().max() < TOLERANCE
        out = model(original.images)
    deltas = [(out.anomaly_map[:, 0] - expected).abs().max(), (out.pred_score - expected.amax(dim=(1, 2))).abs().max()]
    print(f"AA-CLIP parity: map range {float(expected.min()):.4g}..{float(expected.max()):.4g}, max |d| map "
          f"{float(deltas[0]):.3g}, score {float(deltas[1]):.3g}")  # fmt: skip
    assert (out.anomaly_map[:, 0] - expected).abs().max() < TOLERANCE * expected.abs().max()
    assert (out.pred_score - expected.amax(dim=(1, 2))).abs().max() < TOLERANCE * expected.abs().max()
    assert expected.std() > 1e-3  # a real map, not constants on both sides


def test_teacher_tokens_match_the_original_per_image_and_mixed_at_batch_two(original: SimpleNamespace) -> None:
    """Default: each image alone (= the original at batch size 1); ``teacher_batch_mixing``: the original's batch."""
    teacher, clip, model = original.teacher, original.adapted.clipmodel, original.ours.model

    def reference(images: torch.Tensor) -> torch.Tensor:  # train.py:train_text_adapter, "forward image"
        _, tokens = teacher.encode_image(images, [6, 12, 18, 24])
        cls, _ = clip.encode_image(images, [])
        cls = cls / cls.norm(dim=-1, keepdim=True)
        tokens = teacher.visual.ln_post(tokens[-1][:, 1:, :]) @ teacher.visual.proj
        return tokens / tokens.norm(dim=-1, keepdim=True) + cls.unsqueeze(1)

    with torch.no_grad():
        singles = torch.cat([reference(image[None]) for image in original.images])
        mixed = reference(original.images)
        ours = model.teacher_tokens(original.images)
        model.teacher_batch_mixing = True
        ours_mixed = model.teacher_tokens(original.images)
        model.teacher_batch_mixing = False
    print(f"AA-CLIP parity: teacher max |d| per image {float((ours - singles).abs().max()):.3g}, mixed "
          f"{float((ours_mixed - mixed).abs().max()):.3g}; mixing moves the original's by "
          f"{float((mixed - singles).abs().max()):.3g}")  # fmt: skip
    assert (ours - singles).abs().max() < TOLERANCE
    assert (ours_mixed - mixed).abs().max() < TOLERANCE
    assert (mixed - singles).abs().max() > 1e-3  # the original's teacher does depend on the batch


def _steps(original: SimpleNamespace, batch: slice) -> SimpleNamespace:
    """The original's ``train_text_adapter`` / ``train_image_adapter`` for one step on ``images[batch]``."""
    train, fu, adapted = original.modules.train, original.modules.forward_utils, original.adapted
    save = original.tmp / "original_run"
    save.mkdir(exist_ok=True)
    log = logging.getLogger("aa_clip_parity")
    n = len(original.labels[batch])
    loader = [{"image": original.images[batch], "mask": original.masks[batch], "label": original.labels[batch],
               "class_name": [DATASET] * n}]  # fmt: skip

    def text_step() -> None:
        optimizer = torch.optim.Adam(adapted.text_adapter.parameters(), lr=1e-5, betas=(0.5, 0.999))
        train.train_text_adapter(
            adapted_model=adapted, clip_surgery=original.teacher, text_norm_weight=0.1, train_loader=loader,
            optimizer=optimizer, device="cpu", start_epoch=0, save_path=str(save), text_epoch=1, dataset_name=DATASET,
            img_size=SIZE, logger=log,
        )  # fmt: skip

    def image_step() -> None:
        with torch.no_grad():
            text = fu.get_adapted_text_embedding(adapted, DATASET, "cpu")
        optimizer = torch.optim.Adam(adapted.image_adapter.parameters(), lr=5e-4, betas=(0.5, 0.999))
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16000, 32000], gamma=0.5)
        train.train_image_adapter(
            model=adapted, text_embeddings=text, train_loader=loader, optimizer=optimizer, scheduler=scheduler,
            device="cpu", start_epoch=0, save_path=str(save), image_epoch=1, img_size=SIZE, logger=log,
        )  # fmt: skip

    ours = SimpleNamespace(
        image=original.images[batch], gt_mask=original.masks[batch, 0], gt_label=original.labels[batch]
    )
    return SimpleNamespace(text=text_step, image=image_step, batch=ours)


def test_one_text_step_gives_the_original_gradients(original: SimpleNamespace) -> None:
    """Stage 1 at the original's batch of two images (teacher with its cross-image mixing)."""
    steps, ours = _steps(original, slice(0, 2)), original.ours
    text_grads = _original_grads(original.adapted.text_adapter, steps.text)
    model = ours.model.train()
    model.teacher_batch_mixing = True
    model.set_stage(1)
    ours.text_stage_loss(steps.batch).backward()
    model.teacher_batch_mixing = False
    text_delta = _relative([p.grad for p in model.text_adapter.parameters()], text_grads)
    print(f"AA-CLIP parity: stage-1 adapter gradients, max relative |d| {text_delta:.3g}")
    assert text_delta < TOLERANCE
    assert all(p.grad is None for p in model.image_adapter.parameters())
    model.zero_grad(set_to_none=True)
    model.eval()


def test_one_image_step_gives_the_original_gradients(original: SimpleNamespace) -> None:
    """Stage 2 on the image with a mask (batch of one: a backward through ViT-L at 518 px needs ~6 GB per image)."""
    steps, ours = _steps(original, slice(1, 2)), original.ours
    image_grads = _original_grads(original.adapted.image_adapter, steps.image)
    model = ours.model.train()
    model.set_stage(2)
    ours.image_stage_loss(steps.batch).backward()
    grads = [p.grad for p in model.image_adapter.parameters()]
    # Per tensor ||d|| / ||g||: the largest single element of layer_adapters.5 differs by ~1e-4 of the tensor's max
    # (the other tensors: ~2e-6) while its norm differs by < 1e-5; both are printed and recorded in the README.
    image_delta = max(float((a - b).norm() / b.norm()) for a, b in zip(grads, image_grads, strict=True))
    print(f"AA-CLIP parity: stage-2 adapter gradients, max over tensors of ||d||/||g|| {image_delta:.3g}, of "
          f"max|d|/max|g| {_relative(grads, image_grads):.3g}")  # fmt: skip
    assert image_delta < TOLERANCE
    assert all(p.grad is None for p in model.text_adapter.parameters())
    model.zero_grad(set_to_none=True)
    model.eval()


def test_saved_adapters_load_strictly_into_the_original(original: SimpleNamespace) -> None:
    ours = original.ours.model
    before = {k: v.clone() for k, v in ours.state_dict().items() if "adapter" in k}
    with torch.no_grad():
        for p in (*ours.text_adapter.parameters(), *ours.image_adapter.parameters()):
            p.mul_(1.5)
    image_path = ours.save_official_checkpoint(original.tmp / "ours" / "image_adapter_3.pth", epoch=3)
    text_path = image_path.parent / "text_adapter.pth"
    other = original.modules.model_adapter.AdaptedCLIP(original.adapted.clipmodel, relu=False).eval()
    other.text_adapter.load_state_dict(torch.load(text_path)["text_adapter"])  # strict, as the original's test.py
    other.image_adapter.load_state_dict(torch.load(image_path)["image_adapter"])
    assert torch.load(image_path)["epoch"] == 3
    with torch.no_grad():
        text = original.modules.forward_utils.get_adapted_text_embedding(other, DATASET, "cpu")[DATASET]
        assert (ours.eval().text_features() - text.T).abs().max() < TOLERANCE
        for ours_p, theirs in zip(ours.image_adapter.parameters(), other.image_adapter.parameters(), strict=True):
            assert torch.equal(ours_p, theirs)
    ours.load_state_dict({**ours.state_dict(), **before})
    ours.train(False)
