# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFA port vs the original code (MediaBrain-SJTU/MVFA-AD): training, inference and memory-bank speed, in one run.

Both sides get one random open_clip ViT-L-14-336 state dict (the original's widths are hard-coded for it), the same
adapters (the original's ``CLIP_Inplanted`` adapters saved in its format and loaded through ``official_checkpoint``)
and the same random ``[0, 1]`` images, fp32, on one device. Timings are medians after a warm-up run:

- training samples/s: the original's ``train_few.py`` step at batch 1 (forward, focal + Dice + BCE, backward, two Adam
  steps) vs ours at ``--batch`` (``MVFA.training_step``, backward, the one two-group Adam step);
- inference s/image, zero-shot: ``test_zero.py``'s per-image arithmetic (batch 1, all it can run) vs ours at batch 1
  and ``--batch``;
- few-shot memory-bank scoring s/image: ``test_few.py``'s nearest-neighbour maps of the segmentation branch on given
  tokens (``cos_sim``, ``min``, upsampling, numpy, per image) vs ours (``few_shot_map`` on the batch), with the bank of
  ``--shots`` normal images x 11 augmented views; and the bank's construction (batch-1 loop vs chunks of 16).

Targets (issue 13): inference >= 2x at batch 8 and memory-bank scoring >= 3x the original at batch 1.

Usage:
    MEDCLIP_ORIGINALS=/path/to/originals OMP_NUM_THREADS=2 python benchmarks/bench_mvfa_vs_original.py \
        [--size 240] [--batch 8] [--shots 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from _shared import DEVICE, import_original, timed
from anomalib.data import ImageBatch

from anomalib_medclip import MVFA

LAYERS = [6, 12, 18, 24]


def _cpu_to() -> None:
    """``CLIP_Inplanted.forward`` moves an unused tensor to ``'cuda'``: keep it on the CPU when there is none."""
    if not torch.cuda.is_available():
        original_to = torch.Tensor.to
        torch.Tensor.to = lambda t, *a, **k: t if a[:1] == ("cuda",) else original_to(t, *a, **k)  # type: ignore[method-assign]


def _original_seg_probs(tokens: torch.Tensor, text: torch.Tensor, size: int) -> torch.Tensor:
    """The originals' (``test_zero.py``, ``train_few.py``) normal/abnormal probabilities ``(1, 2, size, size)``."""
    tokens = tokens / tokens.norm(dim=-1, keepdim=True)
    logits = (100.0 * tokens @ text).unsqueeze(0)
    grid = int(np.sqrt(logits.shape[1]))
    up = F.interpolate(logits.permute(0, 2, 1).view(1, 2, grid, grid), size=size, mode="bilinear", align_corners=True)
    return torch.softmax(up, dim=1)


def _original_zero_shot(model: torch.nn.Module, text: torch.Tensor, image: torch.Tensor, size: int) -> None:
    """``test_zero.py``: detection score and segmentation map of one image."""
    with torch.no_grad():
        _, seg, det = model(image)
        seg, det = [p[0, 1:, :] for p in seg], [p[0, 1:, :] for p in det]
        score = 0
        for p in det:
            p = p / p.norm(dim=-1, keepdim=True)
            score += torch.softmax((100.0 * p @ text).unsqueeze(0), dim=-1)[:, :, 1].mean()
        np.sum([_original_seg_probs(p, text, size)[:, 1, :, :].cpu().numpy() for p in seg], axis=0)


def _original_memory_scoring(
    cos_sim: Callable, memory: list[torch.Tensor], tokens: list[torch.Tensor], size: int
) -> None:
    """``test_few.py``'s few-shot segmentation map of one image from its tokens."""
    maps = []
    for bank, p in zip(memory, tokens, strict=True):
        cos = cos_sim(bank, p)
        height = int(np.sqrt(cos.shape[1]))
        few = torch.min((1 - cos), 0)[0].reshape(1, 1, height, height)
        maps.append(F.interpolate(few, size=size, mode="bilinear", align_corners=True)[0].cpu().numpy())
    np.sum(maps, axis=0)


def _bench_training(
    loss: ModuleType, original: torch.nn.Module, ours: MVFA, text: torch.Tensor, images: torch.Tensor,
    masks: torch.Tensor, labels: torch.Tensor, repeats: int,
) -> dict[str, float]:  # fmt: skip
    """Samples/s of one optimiser step per sample (the original) and per batch (ours)."""
    size, batch = images.shape[-1], len(images)
    focal, dice, bce = loss.FocalLoss(), loss.BinaryDiceLoss(), torch.nn.BCEWithLogitsLoss()
    original.requires_grad_(True)  # as train_few.py: every parameter, CLIP's included, gets gradients
    optimisers = [
        torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.999))
        for m in (original.seg_adapters, original.det_adapters)
    ]

    def original_step() -> None:
        _, seg, det = original(images[:1])
        seg, det = [p[0, 1:, :] for p in seg], [p[0, 1:, :] for p in det]
        total = 0
        for p in det:
            p = p / p.norm(dim=-1, keepdim=True)
            total += bce(
                torch.softmax((100.0 * p @ text).unsqueeze(0), dim=-1)[:, :, 1].mean(dim=-1), labels[:1].float()
            )
        mask = masks[:1].float()
        for p in seg:
            probs = _original_seg_probs(p, text, size)
            total += focal(probs, mask) + dice(probs[:, 1, :, :], mask)
        for optimiser in optimisers:
            optimiser.zero_grad()
        total.backward()
        for optimiser in optimisers:
            optimiser.step()

    optimiser = ours.configure_optimizers()
    train_batch = ImageBatch(image=images, gt_label=labels, gt_mask=masks)

    def ours_step() -> None:
        optimiser.zero_grad()
        ours.training_step(train_batch).backward()
        ours.on_before_optimizer_step(optimiser)
        optimiser.step()

    return {
        "original (batch 1)": 1 / timed(original_step, repeats),
        f"ours (batch {batch})": batch / timed(ours_step, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=240)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--shots", type=int, default=1, help="normal support images of the memory bank (x 11 views)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    originals = os.environ.get("MEDCLIP_ORIGINALS")
    root = Path(originals or "") / "MediaBrain-SJTU+MVFA-AD"
    if not originals or not root.is_dir():
        sys.exit(f"Set MEDCLIP_ORIGINALS to a folder holding MediaBrain-SJTU+MVFA-AD/ (not found: {root}).")
    _cpu_to()
    clip_module, model_module, adapter, utils, loss = import_original(
        root, "CLIP.clip", "CLIP.model", "CLIP.adapter", "utils", "loss"
    )
    size, batch = args.size, args.batch
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-L-14-336", pretrained=None).state_dict()
    torch.save(state, tmp / "vit_l.pt")
    clip = clip_module.create_model("ViT-L-14-336", size, pretrained=None, force_image_size=size)
    model_module.resize_pos_embed(state, clip)
    clip.load_state_dict(state)
    del state
    torch.manual_seed(1)
    original = adapter.CLIP_Inplanted(clip_model=clip.eval(), features=LAYERS).eval().to(DEVICE)
    adapters = {"seg_adapters": original.seg_adapters.state_dict(), "det_adapters": original.det_adapters.state_dict()}
    torch.save(adapters, tmp / "adapters.pth")
    with torch.no_grad():
        text = utils.encode_text_with_prompt_ensemble(clip, "Liver", DEVICE)
    ours = MVFA(
        backbone="ViT-L-14-336", pretrained=str(tmp / "vit_l.pt"), image_size=size, object_name="Liver", few_shot=False,
    ).to(DEVICE)  # fmt: skip
    ours.model.load_official_checkpoint(tmp / "adapters.pth")  # trainable, with the original's adapters
    ours.model.setup_text("Liver")
    ours.model.text_features()  # encoded once and cached, as the original's text_features before its loop
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    masks = torch.zeros(batch, size, size, dtype=torch.bool, device=DEVICE)
    masks[:, size // 4 : size // 2, size // 4 : size // 2] = True
    labels = torch.ones(batch, dtype=torch.long, device=DEVICE)

    results: dict[str, dict[str, float]] = {}
    results["training samples/s"] = _bench_training(loss, original, ours, text, images, masks, labels, args.repeats)
    # zero-shot inference
    ours.eval()
    with torch.no_grad():
        results["inference s/image (zero-shot)"] = {
            "original (batch 1)": timed(lambda: _original_zero_shot(original, text, images[:1], size), args.repeats),
            "ours (batch 1)": timed(lambda: ours.model(images[:1]), args.repeats),
            f"ours (batch {batch})": timed(lambda: ours.model(images), args.repeats) / batch,
        }

    # few-shot memory bank: construction and scoring
    support = torch.rand(args.shots, 3, size, size, generator=torch.Generator().manual_seed(3)).to(DEVICE)

    def original_bank() -> list[torch.Tensor]:
        views, _ = utils.augment(support.cpu())
        features = []
        with torch.no_grad():
            for view in views:
                features.append([p[0].contiguous() for p in original(view[None].to(DEVICE))[1]])
        return [torch.cat([f[i] for f in features]) for i in range(len(LAYERS))]

    def ours_bank() -> None:
        ours.model.set_support(support)
        ours.model.memory()

    with torch.no_grad():
        memory = original_bank()
        results[f"memory bank construction s ({args.shots} x 11 views)"] = {
            "original (batch 1)": timed(original_bank, max(1, args.repeats - 1)),
            "ours (chunks of 16)": timed(ours_bank, max(1, args.repeats - 1)),
        }
        seg_tokens, _ = ours.model.encode(images)
        theirs = [[t[i, 1:] for t in seg_tokens] for i in range(batch)]
        bank = ours.model.memory()[0]
        results["memory-bank scoring s/image"] = {
            "original (batch 1)": timed(
                lambda: [_original_memory_scoring(utils.cos_sim, memory, t, size) for t in theirs], args.repeats
            )
            / batch,
            f"ours (batch {batch})": timed(lambda: ours.model.few_shot_map(seg_tokens, bank, size), args.repeats)
            / batch,
        }
    summary = {
        "device": DEVICE,
        "threads": torch.get_num_threads(),
        "size": size,
        "memory_rows_per_layer": int(bank[0].shape[0]),
        "results": results,
        "speed-ups": {
            "training": results["training samples/s"][f"ours (batch {batch})"]
            / results["training samples/s"]["original (batch 1)"],
            "inference": results["inference s/image (zero-shot)"]["original (batch 1)"]
            / results["inference s/image (zero-shot)"][f"ours (batch {batch})"],
            "memory-bank scoring": results["memory-bank scoring s/image"]["original (batch 1)"]
            / results["memory-bank scoring s/image"][f"ours (batch {batch})"],
        },
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
