# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""DemoBraTS end to end: axial vs tri-planar vs 2.5D vs multi-sequence inputs (and the UAD chain), one table.

MedCrossModalCLIP with the README's demo config (``configs/demo/med_cross_modal_clip_demo_brats.yaml``: random
ViT-S-16 at 64 px, 1 fine-tuned layer, its epochs and seed), trained on the DemoBraTS training subjects then tested,
once per input variant (same seed, same subject split). Protocol: supervised on DemoBraTS training subjects (not
zero-shot); thresholds F1-adaptive on the validation subjects (``val_dice`` for the UAD rows), maps min-max
normalised on them; 3D Dice over the test volumes with lesions, brain voxels; voxel AUROC binned.

The backbone has RANDOM weights (nothing can be downloaded here), so these numbers show that each variant runs end to
end and what it costs, not how well a real CLIP model would do with it.

Run: ``python benchmarks/demo_3d_inputs.py [--epochs N]`` from the repository root (about 5 min on 2 CPU cores).

Measured 2026-12-05 (1 epoch, seed 0; random weights, so the mechanism only):

    input                       3D Dice  voxel AUROC  pixel AUROC   CPU s
    axial (as the study)          0.266        0.876        0.938      36
    tri-planar (mean)             0.312        0.927        0.945      41
    2.5D (z-1, z, z+1)            0.273        0.860        0.914      30
    sequences t2f,t1c,t2w         0.215        0.820        0.913      29
    axial, UAD chain              0.277        0.832        0.938      29
    tri-planar, UAD chain         0.299        0.856        0.945      43
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from anomalib.engine import Engine
from lightning.pytorch import seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_training_gain import CONFIG, load_settings  # the sibling benchmark's config reader

from anomalib_medclip import MedCrossModalCLIP
from anomalib_medclip.data import DemoBraTS
from anomalib_medclip.volumes import VolumeEvaluator

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # data options, volume evaluator options
    "axial (as the study)": ({}, {}),
    "tri-planar (mean)": ({"planes": ["axial", "coronal", "sagittal"]}, {}),
    "2.5D (z-1, z, z+1)": ({"channels": "adjacent"}, {}),
    "sequences t2f,t1c,t2w": ({"channels": "sequences", "sequences": ["t2f", "t1c", "t2w"]}, {}),
    "axial, UAD chain": ({}, {"postprocess": "uad"}),
    "tri-planar, UAD chain": ({"planes": ["axial", "coronal", "sagittal"]}, {"postprocess": "uad"}),
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(settings: dict[str, Any], data: dict[str, Any], chain: dict[str, Any], epochs: int, root: str) -> dict:
    """Fit then test one variant; its metrics and CPU seconds."""
    start = _cpu_seconds()
    seed_everything(settings["seed"])
    model = MedCrossModalCLIP(
        **settings["model"], visualizer=False, volume_evaluator=VolumeEvaluator(brats_official=False, **chain)
    )
    datamodule = DemoBraTS(**{**settings["data"], **data})
    engine = Engine(default_root_dir=root, accelerator="cpu", devices=1, max_epochs=epochs, logger=False)
    engine.fit(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule)[0]
    return {**metrics, "cpu_s": _cpu_seconds() - start}


def main() -> None:
    """Run every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of the config")
    args = parser.parse_args()
    settings = load_settings(CONFIG)
    epochs = settings["epochs"] if args.epochs is None else args.epochs
    rows = {}
    with tempfile.TemporaryDirectory() as root:
        for index, (name, (data, chain)) in enumerate(VARIANTS.items()):
            rows[name] = run(settings, data, chain, epochs, f"{root}/{index}")
    model = settings["model"]
    print(
        f"DemoBraTS, MedCrossModalCLIP {model.get('backbone')} RANDOM weights at {model.get('image_size')} px, "
        f"{epochs} epoch(s), seed {settings['seed']}: the mechanism, not real-data quality"
    )
    print(f"{'input':26s} {'3D Dice':>8s} {'voxel AUROC':>12s} {'pixel AUROC':>12s} {'CPU s':>7s}")
    for name, row in rows.items():
        print(
            f"{name:26s} {row['volume3d_dice']:8.3f} {row['voxel_auroc']:12.3f} {row['pixel_AUROC']:12.3f}"
            f" {row['cpu_s']:7.0f}"
        )


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"wall {time.perf_counter() - start:.0f} s")
