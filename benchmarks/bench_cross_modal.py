# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Throughput and peak memory of MedCrossModalCLIP vs VanillaCLIP, same input, same random weights, one run.

Target (issue "MedCrossModalCLIP"): the cross-modal model costs at most 2x VanillaCLIP's inference time.
Both models fine-tune the last 2 visual blocks in the training measurement (the paper's setting; VanillaCLIP = CLIP^FT).
Each configuration runs in its own process so that peak RSS is its own.

Run: ``python benchmarks/bench_cross_modal.py [--backbones ViT-B-16 ViT-L-14-336] [--batch 8] [--iters 2]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F

    from anomalib_medclip import MedCrossModalCLIP, VanillaCLIP

    torch.manual_seed(0)
    cls = MedCrossModalCLIP if spec["model"] == "MedCrossModalCLIP" else VanillaCLIP
    model = cls(backbone=spec["backbone"], pretrained=None, object_name="brain MRI scan", finetune_layers=2)
    model.setup()
    size = model.model.backbone.image_size
    images = torch.randn(spec["batch"], 3, size, size)
    labels = torch.arange(spec["batch"]) % 2
    masks = torch.rand(spec["batch"], size, size) > 0.9
    if spec["mode"] == "inference":
        step = torch.no_grad()(lambda: model.model(images))
    else:
        optimizer = model.configure_optimizers()

        def step() -> None:
            optimizer.zero_grad()
            if cls is MedCrossModalCLIP:
                logits, maps = model.model.forward_train(images)
                loss = F.cross_entropy(logits, labels) + model.map_loss(maps, masks)
            else:
                logits, _ = model.model.image_logits(images)
                loss = F.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(spec["iters"]):
        step()
    seconds = (time.perf_counter() - start) / spec["iters"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**spec, "s_per_batch": seconds, "images_per_s": spec["batch"] / seconds, "peak_rss_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbones", nargs="+", default=["ViT-B-16", "ViT-L-14-336"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    import torch

    print(f"CPU, {torch.get_num_threads()} threads, batch {args.batch}, random weights, fp32")
    print(f"{'backbone':14} {'mode':10} {'model':18} {'img/s':>8} {'s/batch':>8} {'peak RSS MiB':>13}")
    for backbone in args.backbones:
        for mode in ("inference", "training"):
            rows = {}
            for model in ("VanillaCLIP", "MedCrossModalCLIP"):
                spec = {"model": model, "backbone": backbone, "mode": mode, "batch": args.batch, "iters": args.iters}
                out = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=True
                )
                rows[model] = row = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"{backbone:14} {mode:10} {model:18} {row['images_per_s']:8.2f} {row['s_per_batch']:8.2f} "
                    f"{row['peak_rss_mib']:13.0f}"
                )
            ratio = rows["MedCrossModalCLIP"]["s_per_batch"] / rows["VanillaCLIP"]["s_per_batch"]
            target = " (target <= 2.0)" if mode == "inference" else ""
            print(f"{backbone:14} {mode:10} cross-modal / vanilla time: {ratio:.2f}x{target}")


if __name__ == "__main__":
    main()
