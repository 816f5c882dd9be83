# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Does training MedCrossModalCLIP improve the DemoBraTS test metrics over the untrained model?

Same seeded random ViT-B-16 backbone (offline: no pretrained weights), same subject split. "Untrained" validates
(thresholds, normalisation) then tests; "trained" fits ``--epochs`` on the training subjects' slices first.
Protocol: supervised on DemoBraTS training subjects (not zero-shot); thresholds F1-adaptive on the validation
subjects; scores min-max normalised on them. Absolute numbers mean little with random CLIP weights; the
difference shows that the cross-modal blocks learn.

Run: ``python benchmarks/demo_training_gain.py [--epochs 3] [--image-size 64]``
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from anomalib.engine import Engine

from anomalib_medclip import MedCrossModalCLIP
from anomalib_medclip.data import DemoBraTS


def run(epochs: int, image_size: int, root: str) -> dict[str, float]:
    torch.manual_seed(0)
    model = MedCrossModalCLIP(
        backbone="ViT-B-16", pretrained=None, image_size=image_size, finetune_layers=2, visualizer=False
    )
    datamodule = DemoBraTS(train_batch_size=8, eval_batch_size=32, num_workers=0)
    engine = Engine(default_root_dir=root, accelerator="cpu", max_epochs=max(epochs, 1), logger=False)
    if epochs:
        engine.fit(model, datamodule=datamodule)
    else:
        engine.validate(model, datamodule=datamodule)
    return engine.test(model, datamodule=datamodule)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        untrained = run(0, args.image_size, root)
        trained = run(args.epochs, args.image_size, root)
    print(f"DemoBraTS test split, ViT-B-16 random weights at {args.image_size} px, {args.epochs} epochs")
    for key in sorted(untrained):
        print(f"{key:20} untrained {untrained[key]:.4f}   trained {trained[key]:.4f}")


if __name__ == "__main__":
    main()
