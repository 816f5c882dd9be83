# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Does training MedCrossModalCLIP improve the DemoBraTS test metrics over the untrained model?

Settings (backbone, image size, fine-tuned layers, data options, epochs, seed) are read from the README's demo config,
``configs/demo/med_cross_modal_clip_demo_brats.yaml``, so the figures describe exactly the job the README runs.
Same seeded random backbone (offline: no pretrained weights), same subject split. "Untrained" validates
(thresholds, normalisation) then tests; "trained" fits the config's epochs on the training subjects' slices first
(as ``anomalib train --config ...`` does). Protocol: supervised on DemoBraTS training subjects (not zero-shot);
thresholds F1-adaptive on the validation subjects; scores min-max normalised on them. Absolute numbers mean little
with random CLIP weights; the difference shows that the cross-modal blocks learn. Slice overlays are switched off.

Run: ``python benchmarks/demo_training_gain.py [--config configs/demo/...yaml] [--epochs N]`` (from the repository
root; the demo data is generated into the config's ``data.init_args.root`` if missing).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_medclip import MedCrossModalCLIP
from anomalib_medclip.data import DemoBraTS

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo" / "med_cross_modal_clip_demo_brats.yaml"
KEYS = ("image_AUROC", "pixel_AUROC", "voxel_auroc", "image_F1Score", "pixel_F1Score", "volume3d_dice")


def load_settings(config: Path) -> dict[str, Any]:
    """Model and data ``init_args``, ``max_epochs`` and ``seed_everything`` of an ``anomalib train`` config."""
    raw = yaml.safe_load(config.read_text())
    for section, expected in (("model", "MedCrossModalCLIP"), ("data", "DemoBraTS")):
        if raw[section]["class_path"].rsplit(".", 1)[-1] != expected:
            msg = f"{config}: {section}.class_path is {raw[section]['class_path']!r}; this benchmark needs {expected}."
            raise ValueError(msg)
    return {
        "model": dict(raw["model"].get("init_args", {})),
        "data": dict(raw["data"].get("init_args", {})),
        "epochs": int(raw.get("trainer", {}).get("max_epochs", 1)),
        "seed": int(raw.get("seed_everything", 0)),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(settings: dict[str, Any], epochs: int, root: str) -> tuple[dict[str, float], float]:
    """Test metrics after ``epochs`` of training (0: validate only), and the run's process CPU seconds."""
    start = _cpu_seconds()
    seed_everything(settings["seed"])  # as the CLI does before instantiating the classes
    model = MedCrossModalCLIP(**settings["model"], visualizer=False)
    datamodule = DemoBraTS(**settings["data"])
    engine = Engine(default_root_dir=root, accelerator="cpu", devices=1, max_epochs=max(epochs, 1), logger=False)
    if epochs:
        engine.fit(model, datamodule=datamodule)
    else:
        engine.validate(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule)[0]
    return metrics, _cpu_seconds() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="anomalib train config (MedCrossModalCLIP on DemoBraTS)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of the config")
    args = parser.parse_args()
    settings = load_settings(args.config)
    epochs = settings["epochs"] if args.epochs is None else args.epochs
    with tempfile.TemporaryDirectory() as root:
        wall = time.perf_counter()
        untrained, cpu_untrained = run(settings, 0, f"{root}/untrained")
        trained, cpu_trained = run(settings, epochs, f"{root}/trained")
        wall = time.perf_counter() - wall
    model, data = settings["model"], settings["data"]
    print(
        f"DemoBraTS test split ({data.get('n_subjects', 12)} subjects, slices={data.get('slices', 'all')}), "
        f"{model.get('backbone')} pretrained={model.get('pretrained')} at {model.get('image_size')} px, "
        f"finetune_layers={model.get('finetune_layers', 0)}, {epochs} epoch(s), seed {settings['seed']} "
        f"(from {args.config.name})"
    )
    for key in [k for k in KEYS if k in untrained] + sorted(set(untrained) - set(KEYS)):
        gain = trained[key] - untrained[key]
        print(f"{key:22} untrained {untrained[key]:.4f}   trained {trained[key]:.4f}   gain {gain:+.4f}")
    print(f"CPU time (user+sys): untrained {cpu_untrained:.0f} s, trained {cpu_trained:.0f} s; wall {wall:.0f} s")


if __name__ == "__main__":
    main()
