# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AACLIP vs the original AA-CLIP code: inference s/image and training samples/s of both stages, side by side.

One run, one random open_clip ViT-L-14-336 state dict loaded into both (the original's hard-coded adapter widths need
ViT-L), the same adapters (the original's ``AdaptedCLIP``, saved in its format and loaded into ours), the same random
images and masks, fp32, CPU:

- inference: the original's forward and test-time maps (``forward_utils.calculate_similarity_map``) at batch 1 and at
  the batch size asked for (its ``test.py`` batches), ours at that batch size; text anchors computed once on both
  sides, as its ``test.py`` does;
- training: one timed step (after a warm-up step) of ``train.py``'s ``train_text_adapter`` (stage 1) and
  ``train_image_adapter`` (stage 2) on one batch, against ours (the Lightning module's stage losses, backward, Adam).

The original is read from ``$MEDCLIP_ORIGINALS/Mwxinnn+AA-CLIP``. The default size (224 px, 16x16 patches) keeps a CPU
run short; the original's own setting is ``--size 518``.

Usage:
    MEDCLIP_ORIGINALS=/tmp/originals python benchmarks/bench_aa_clip_vs_original.py [--size 224] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace

import open_clip
import torch

from anomalib_medclip import AACLIP

DATASET, OBJECT = "Brain", "scan"


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _original(root: Path) -> SimpleNamespace:
    sys.modules.setdefault("ipdb", ModuleType("ipdb"))  # imported, never used, by its modules
    threads, environ = torch.get_num_threads(), dict(os.environ)
    sys.path.insert(0, str(root))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        import forward_utils
        import train
        from model import adapter, model
    finally:
        os.chdir(cwd)
        sys.path.remove(str(root))
    torch.set_num_threads(threads)  # its train.py sets 4 threads at import
    os.environ.clear()
    os.environ.update(environ)
    return SimpleNamespace(fu=forward_utils, train=train, adapter=adapter, model=model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8, help="inference batch size (ours and the original's batched)")
    parser.add_argument("--train-batch", type=int, default=2, help="training batch size of both stages")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(os.environ.get("MEDCLIP_ORIGINALS", "/tmp/originals")) / "Mwxinnn+AA-CLIP"
    if not root.is_dir():
        sys.exit(f"{root} not found: set MEDCLIP_ORIGINALS (see tests/README.md)")
    orig = _original(root)
    tmp = Path(tempfile.mkdtemp())
    config = json.loads((root / "model" / "model_configs" / "ViT-L-14-336.json").read_text())
    config["vision_cfg"]["image_size"] = args.size
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-L-14-336", pretrained=None).state_dict()
    torch.save(state, tmp / "vit_l.pt")

    def build(state: dict[str, torch.Tensor]) -> torch.nn.Module:
        clip = orig.model.CLIP(**config)
        sized = dict(state)
        orig.model.resize_pos_embed(sized, clip)
        clip.load_state_dict(sized)
        return clip.eval()

    clip, teacher = build(state), build(state)
    teacher.visual.DAPM_replace(DPAM_layer=20)
    del state
    torch.manual_seed(1)
    adapted = orig.adapter.AdaptedCLIP(clip, relu=False).eval()
    torch.save({"text_adapter": adapted.text_adapter.state_dict()}, tmp / "text_adapter.pth")
    torch.save({"image_adapter": adapted.image_adapter.state_dict()}, tmp / "image_adapter.pth")
    ours = AACLIP(
        backbone="ViT-L-14-336", pretrained=str(tmp / "vit_l.pt"), image_size=args.size, object_name=OBJECT,
        smoothing_kernel=min(9, 2 * (args.size // 14 // 2) - 1),
    )  # fmt: skip
    ours.model.load_official_checkpoint(tmp / "image_adapter.pth", tmp / "text_adapter.pth")
    ours.model.setup_text(OBJECT)
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    size = args.size

    # ---------------------------------------------------------------- inference
    def original_predict(batch: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        seg, det = adapted(batch)
        _ = (det @ text)[:, 1]
        maps = [orig.fu.calculate_similarity_map(f, text, size, test=True, domain="Medical") for f in seg]
        return torch.cat(maps, dim=1).sum(1)

    model = ours.model.eval()
    with torch.no_grad():
        text = orig.fu.get_adapted_text_embedding(adapted, DATASET, "cpu")[DATASET]
        model.text_features()
        original_predict(images[:1], text)  # warm-up
        model(images[:1])
        t_orig_1 = _seconds(lambda: [original_predict(image[None], text) for image in images]) / args.batch
        t_orig_b = _seconds(lambda: original_predict(images, text)) / args.batch
        t_ours_b = _seconds(lambda: model(images)) / args.batch

    # ---------------------------------------------------------------- training
    n = args.train_batch
    masks = torch.zeros(n, 1, size, size)
    masks[-1, :, size // 4 : size // 2, size // 3 : size // 2] = 1
    loader = [{"image": images[:n], "mask": masks, "label": torch.arange(n) % 2, "class_name": [DATASET] * n}]
    batch = SimpleNamespace(image=images[:n], gt_mask=masks[:, 0], gt_label=torch.arange(n) % 2)
    log, save = logging.getLogger("bench"), tmp / "original_run"
    save.mkdir()

    def original_stage(stage: int) -> None:
        if stage == 1:
            optimizer = torch.optim.Adam(adapted.text_adapter.parameters(), lr=1e-5, betas=(0.5, 0.999))
            orig.train.train_text_adapter(adapted, teacher, 0.1, loader, optimizer, "cpu", 0, str(save), 1, DATASET,
                                          size, log)  # fmt: skip
        else:
            with torch.no_grad():
                anchors = orig.fu.get_adapted_text_embedding(adapted, DATASET, "cpu")
            optimizer = torch.optim.Adam(adapted.image_adapter.parameters(), lr=5e-4, betas=(0.5, 0.999))
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16000, 32000], gamma=0.5)
            orig.train.train_image_adapter(adapted, anchors, loader, optimizer, scheduler, "cpu", 0, str(save), 1,
                                           size, log)  # fmt: skip

    optimizer = ours.configure_optimizers()["optimizer"]

    def ours_stage(stage: int) -> None:
        model.train()
        model.set_stage(stage)
        loss = ours.text_stage_loss(batch) if stage == 1 else ours.image_stage_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    rows = []
    for stage in (1, 2):  # one warm-up step each, then one timed step
        original_stage(stage)
        t_orig = _seconds(lambda s=stage: original_stage(s))
        ours_stage(stage)
        t_ours = _seconds(lambda s=stage: ours_stage(s))
        rows.append((stage, n / t_orig, n / t_ours))

    print(f"AA-CLIP vs original, ViT-L-14-336 at {size} px, CPU {args.threads} threads, fp32 (one run)")
    print(f"inference s/image: original batch 1 {t_orig_1:.3f}, original batch {args.batch} {t_orig_b:.3f}, "
          f"ours batch {args.batch} {t_ours_b:.3f}; ours vs original batch 1: {t_orig_1 / t_ours_b:.2f}x")  # fmt: skip
    for stage, orig_rate, ours_rate in rows:
        print(f"training stage {stage} samples/s (batch {n}): original {orig_rate:.3f}, ours {ours_rate:.3f}; "
              f"{ours_rate / orig_rate:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
