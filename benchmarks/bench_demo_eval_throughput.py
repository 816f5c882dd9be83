# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Throughput of the full DemoBraTS evaluation (slices/s, volumes/s) and of the image tower alone (TFLOP/s).

1. End to end: ``Engine.test`` of ``MedCrossModalCLIP`` on the DemoBraTS test subjects (loader, model, anomalib's
   post-processing and metrics, the 3D evaluation with NIfTI writing), timed around the test loop.
2. The image tower alone: batched ``encode_image`` under the chosen precision, synchronised timing; achieved
   TFLOP/s = images/s x FLOPs per image, against ``--peak-tflops`` (default 989: an H100/H200 SXM's dense bf16
   peak; pass the figure of the card used).

FLOPs per image of a ViT with ``L`` blocks, width ``D``, ``N`` tokens (patches + CLS), patch ``p``: each block does
``12 N D^2`` multiply-adds in its projections and MLP plus ``2 N^2 D`` in attention; the patch embedding ``3 p^2 D``
per patch; one multiply-add = 2 FLOPs. Target (issue 5): >= 40 % of the dense bf16 peak on the image tower, GPU.

Usage:
    python benchmarks/bench_demo_eval_throughput.py                      # GPU: ViT-L-14-336, bf16-mixed
    python benchmarks/bench_demo_eval_throughput.py --backbone ViT-B-16 --image-size 64 --precision 32-true  # CPU
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from anomalib.engine import Engine
from lightning.pytorch.callbacks import Callback

from anomalib_medclip import MedCrossModalCLIP
from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.data import DemoBraTS


class _TestTimer(Callback):
    """Wall time of the test loop, and the number of test slices it saw."""

    def __init__(self) -> None:
        self.start, self.seconds, self.slices = 0.0, 0.0, 0

    def on_test_start(self, trainer, pl_module) -> None:
        del trainer, pl_module
        self.start = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        del trainer, pl_module, outputs, batch_idx, dataloader_idx
        self.slices += len(batch.image)

    def on_test_end(self, trainer, pl_module) -> None:
        del trainer, pl_module
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start


def vit_flops(backbone: CLIPBackbone) -> float:
    """FLOPs of one image through the image tower (see the module docstring)."""
    tokens, width = backbone.num_patches + 1, backbone.visual_width
    per_block = 12 * tokens * width**2 + 2 * tokens**2 * width
    patch_embed = backbone.num_patches * 3 * backbone.patch_size**2 * width
    return 2.0 * (backbone.visual_depth * per_block + patch_embed)


def tower_throughput(backbone: CLIPBackbone, batch: int, steps: int, dtype: torch.dtype, device: str) -> float:
    """Images/s of the image tower at ``batch`` under autocast to ``dtype`` (after two warm-up batches)."""
    images = torch.randn(batch, 3, backbone.image_size, backbone.image_size, device=device)
    backbone.to(device)
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(2):
            backbone.encode_image(images)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            backbone.encode_image(images)
        if device == "cuda":
            torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-L-14-336")
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's native size")
    parser.add_argument("--precision", default="bf16-mixed" if torch.cuda.is_available() else "32-true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--steps", type=int, default=10, help="timed batches of the image-tower measurement")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision, torch.float32)

    model = MedCrossModalCLIP(backbone=args.backbone, pretrained=None, image_size=args.image_size, visualizer=False)
    timer = _TestTimer()
    with tempfile.TemporaryDirectory() as root:
        datamodule = DemoBraTS(root=f"{root}/demo", n_subjects=args.subjects, eval_batch_size=args.batch)
        engine = Engine(default_root_dir=root, accelerator=device, devices=1, precision=args.precision,
                        logger=False, callbacks=[timer], enable_progress_bar=False)  # fmt: skip
        engine.validate(model, datamodule=datamodule)  # thresholds and normalisation
        engine.test(model, datamodule=datamodule)
        volumes = datamodule.test_data.samples["volume_id"].nunique()
    backbone = model.model.backbone
    flops = vit_flops(backbone)
    print(f"{args.backbone} at {backbone.image_size} px ({backbone.num_patches} patches), {args.precision}, {device}, "
          f"random weights, MedCrossModalCLIP, eval batch {args.batch}")  # fmt: skip
    print(f"end to end (loader + model + post-processing + 3D evaluation with NIfTI writing): {timer.slices} slices, "
          f"{volumes} volumes in {timer.seconds:.1f} s = {timer.slices / timer.seconds:.1f} slices/s, "
          f"{volumes / timer.seconds:.2f} volumes/s")  # fmt: skip
    images_per_s = tower_throughput(backbone, args.batch, args.steps, dtype, device)
    achieved = images_per_s * flops / 1e12
    print(f"image tower alone: {images_per_s:.1f} images/s x {flops / 1e9:.1f} GFLOP/image = {achieved:.1f} TFLOP/s "
          f"= {100 * achieved / args.peak_tflops:.1f} % of {args.peak_tflops:.0f} TFLOP/s")  # fmt: skip


if __name__ == "__main__":
    main()
