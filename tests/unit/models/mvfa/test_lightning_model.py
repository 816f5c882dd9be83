# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFA's Lightning side: the original's two-optimiser update, few-shot training views, selection labels, arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from anomalib.data import ImageBatch

from anomalib_medclip import MVFA
from anomalib_medclip.data import MedBMAD

OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
TINY = {"backbone": "ViT-tiny-test", "pretrained": None, "image_size": 32, "object_name": "toy"}


def _module(**kwargs: object) -> MVFA:
    module = MVFA(**TINY, **kwargs)
    module.model.setup_text("toy")
    return module


def _batch(with_mask: bool, n: int = 2) -> ImageBatch:
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(n, 32, 32, dtype=torch.bool)
    masks[1, 8:20, 8:20] = True
    return ImageBatch(image=images, gt_label=torch.tensor([0, 1][:n] * (n // 2)), gt_mask=masks if with_mask else None)


def _step(module: MVFA, batch: ImageBatch) -> dict[str, torch.Tensor]:
    before = {n: p.detach().clone() for n, p in module.model.named_parameters() if "adapters" in n}
    optimizer = module.configure_optimizers()
    loss = module.training_step(batch)
    optimizer.zero_grad()
    loss.backward()
    module.on_before_optimizer_step(optimizer)
    optimizer.step()
    return {n: p.detach() - before[n] for n, p in module.model.named_parameters() if "adapters" in n}


@pytest.mark.parametrize("with_mask", [True, False])
def test_batches_without_masks_step_the_detection_adapters_only(with_mask: bool) -> None:
    change = _step(_module(few_shot=False), _batch(with_mask))
    seg_moved = [n for n, d in change.items() if n.startswith("seg") and d.abs().max() > 0]
    det_moved = [n for n, d in change.items() if n.startswith("det") and d.abs().max() > 0]
    assert det_moved
    assert bool(seg_moved) == with_mask  # the original steps its seg Adam only after a seg loss


@pytest.mark.filterwarnings("ignore:Leave-one-out training skips")
def test_zero_shot_trains_the_seg_adapters_on_the_segmentation_sources(mvfa_tree: Path, tiny_model) -> None:
    """MedBMAD leave-one-out (target Liver): Brain batches carry masks and train the seg adapters, Chest ones do not."""
    datamodule = MedBMAD(mvfa_tree, "Liver", leave_one_out=True, num_workers=0, train_batch_size=3)
    datamodule.setup()
    module = tiny_model("MVFA")
    module.model.setup_text("toy")
    optimizer = module.configure_optimizers()
    last_seg = module.model.seg_adapters[-1].fc1[0].weight  # reached by no later tapped layer: by the map loss only
    grads: dict[str, list[tuple[torch.Tensor | None, bool]]] = {"Brain": [], "Chest": []}
    for batch in datamodule.train_dataloader():
        (source,) = {Path(path).parts[-5].removesuffix("_AD") for path in batch.image_path}
        assert (batch.gt_mask is not None) == (source == "Brain")
        module.pre_processor.on_train_batch_start(None, module, batch, 0)  # what the Engine does: resize to 32 px
        optimizer.zero_grad(set_to_none=True)
        module.training_step(batch).backward()
        before_step = last_seg.grad
        module.on_before_optimizer_step(optimizer)
        cleared = all(p.grad is None for p in module.model.seg_adapters.parameters())
        grads[source].append((before_step, cleared))
    assert len(grads["Brain"]) == len(grads["Chest"]) == 2  # 6 test images each, batches of 3
    assert all(g is not None and g.abs().max() > 0 and not cleared for g, cleared in grads["Brain"])
    assert all(g is None and cleared for g, cleared in grads["Chest"])


def test_one_adam_with_two_groups_equals_two_adams() -> None:
    module = _module(few_shot=False)
    seg = [p.detach().clone().requires_grad_() for p in module.model.seg_adapters.parameters()]
    det = [p.detach().clone().requires_grad_() for p in module.model.det_adapters.parameters()]
    two = [torch.optim.Adam(group, lr=1e-3, betas=(0.5, 0.999)) for group in (seg, det)]
    one = module.configure_optimizers()
    ours = [*module.model.seg_adapters.parameters(), *module.model.det_adapters.parameters()]
    for step in range(3):
        grads = [
            torch.randn(p.shape, generator=torch.Generator().manual_seed(step * 100 + i)) for i, p in enumerate(ours)
        ]
        for p, g in zip([*seg, *det], grads, strict=True):
            p.grad = g.clone()
        for p, g in zip(ours, grads, strict=True):
            p.grad = g.clone()
        for optimizer in (*two, one):
            optimizer.step()
    for a, b in zip(ours, [*seg, *det], strict=True):
        assert torch.equal(a.detach(), b.detach())


def test_few_shot_training_uses_the_eleven_views(monkeypatch) -> None:
    module = _module(few_shot=True)
    seen = []
    forward_train = module.model.forward_train
    monkeypatch.setattr(
        module.model, "forward_train", lambda images: seen.append(images.shape) or forward_train(images)
    )
    loss = module.training_step(_batch(with_mask=True))
    assert seen == [torch.Size([22, 3, 32, 32])]
    assert loss.ndim == 0
    assert torch.isfinite(loss)


def test_selection_is_recorded_and_test_set_selection_labelled() -> None:
    assert _module().describe()["model_selection"]["selection"] == "validation split"
    record = _module(selection="test_set").describe()["model_selection"]
    assert record["test_set_selected"] is True
    assert "not a valid zero-shot or few-shot number" in record["note"]
    assert _module(selection="last").selection_record()["selection"] == "last epoch"


def test_pre_processor_keeps_the_originals_unnormalised_input() -> None:
    image = torch.rand(1, 3, 20, 20)
    plain = _module().pre_processor.transform(image)
    normalised = _module(clip_normalize=True).pre_processor.transform(image)
    resized = F.interpolate(image, size=(32, 32), mode="bicubic", antialias=True, align_corners=False)
    assert torch.allclose(plain, resized, atol=1e-5)  # no CLIP normalisation: the original's [0, 1] input
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (OPENAI_MEAN, OPENAI_STD))
    assert torch.allclose(normalised, (resized - mean) / std, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"selection": "best"}, "selection must be"), ({"image_score": "max"}, "image_score must be")],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MVFA(**TINY, **kwargs)


def test_training_without_labels_is_refused() -> None:
    batch = ImageBatch(image=torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="image labels"):
        _module(few_shot=False).training_step(batch)
