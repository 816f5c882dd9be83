# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Script for ``test_ddp.py``: ``anomalib``'s ``Engine.test`` of a tiny VanillaCLIP on a BraTS tree.

``python ddp_run.py DATA OUT DEVICES [PRECISION [VARIANT]]``; ``VARIANT`` ``tri-planar-uad`` serves the three planes
and evaluates with the UAD chain (its val_dice threshold learnt on validation, under DDP too). With ``DEVICES > 1``
it runs Lightning's ``ddp`` strategy on CPU (gloo), whose launcher starts the other ranks by re-running this script.
Rank 0 writes the logged results to ``OUT/results.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from anomalib.engine import Engine
from anomalib.metrics import Evaluator

from anomalib_medclip.data import BraTS
from anomalib_medclip.models import VanillaCLIP
from anomalib_medclip.volumes import VolumeEvaluator, volume_metrics


def main(data: str, out: str, devices: int, precision: str = "32-true", variant: str = "axial") -> None:
    """Test the model on ``data`` with ``devices`` CPU processes; results under ``out``."""
    torch.set_num_threads(1)  # the same arithmetic in every process and in the single-process reference
    evaluator = Evaluator(test_metrics=[*VanillaCLIP.configure_evaluator().test_metrics, *volume_metrics()])
    tri = variant == "tri-planar-uad"
    volume_evaluator = VolumeEvaluator(postprocess="uad", brain_erosion=1) if tri else True
    model = VanillaCLIP("ViT-tiny-test", None, image_size=32, evaluator=evaluator, volume_evaluator=volume_evaluator)
    planes = ["axial", "coronal", "sagittal"] if tri else None
    datamodule = BraTS(data, eval_batch_size=3, num_workers=0, test_ratio=0.5, val_ratio=0.25, planes=planes)
    engine = Engine(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        precision=precision,
        default_root_dir=out,
        logger=False,
        enable_progress_bar=False,
    )
    results = engine.test(model, datamodule=datamodule, verbose=False)
    if engine.trainer.is_global_zero:
        Path(out, "results.json").write_text(json.dumps(results[0], default=float))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
