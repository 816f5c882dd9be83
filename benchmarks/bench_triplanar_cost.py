# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Tri-planar vs axial-only inference end to end: ``Engine.test`` CPU time, side by side in one run (issue 15).

One MedCrossModalCLIP of the README's demo config (random ViT-S-16 at 64 px; validated once on the axial validation
subjects for its thresholds and normalisation, not trained: the cost of a test does not depend on the weights) is
tested on the same DemoBraTS test volumes with ``planes: [axial]`` and ``[axial, coronal, sagittal]``, each with
``eval_slices: all`` and ``brain``, the variants alternating over ``--repeats`` rounds (median per variant). The whole
``Engine.test`` is timed: slice reading, the model, anomalib's post-processing and metrics, the 3D evaluation
(stacking, fusion, NIfTI maps). Torch runs on one thread (``--threads``) so that CPU time does not inflate with spin
waits on a shared machine. The target of issue 15 is tri-planar <= 3.2x axial-only; the floor is the slices served,
(X + Y + Z) / Z (printed). ``--profile`` adds where the time goes (cProfile of one run per variant: cumulative time
in slice reading, the model's test step, the 3D evaluation's per-volume finalise and its end-of-test reports;
profiling inflates Python-heavy parts).

Run: ``python benchmarks/bench_triplanar_cost.py [--repeats 3] [--profile]`` from the repository root (about 4 min).

Measured 2026-12-05 (``--repeats 3 --profile``, OMP_NUM_THREADS=1, 2 shared cores at load average 2.1-3.0; 4 test
volumes of about 54 axial slices, cropped to the brain):

    variant                     slices   CPU s  wall s  CPU ms/slice
    axial, all slices              216    5.07    5.12          23.5
    tri-planar, all slices         684   15.56   15.73          22.8
    axial, brain slices            208    4.85    4.86          23.3
    tri-planar, brain slices       644   14.23   14.35          22.1
    tri-planar / axial: CPU 3.07x (all slices; 3.17x the slices), 2.93x (brain slices; 3.10x the slices)

The model's test step is 90 % of a tri-planar test (14.2 of 15.7 s profiled; MedCrossModalCLIP encodes its
image-conditioned text per slice), slice reading 0.6 s, the per-volume finalise (stacking, fusion, metrics) 0.07 s:
the cost per served slice does not grow with the planes, so the ratio is the slices served. The demo volumes are
cropped to the brain, so (X + Y + Z) / Z is 3.2 here; on 240x240x155 BraTS grids it is 4.1 with all slices, and
``eval_slices: brain`` (no slice without brain in any plane) is what brings it to about 3.2 (not measured here: no
BraTS data). 3D Dice and voxel AUROC are the same with ``all`` and ``brain`` slices in this run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_training_gain import CONFIG, load_settings  # the sibling benchmark's config reader

from anomalib_medclip import MedCrossModalCLIP
from anomalib_medclip.data import DemoBraTS

TRI = ["axial", "coronal", "sagittal"]
VARIANTS: dict[str, dict[str, Any]] = {
    "axial, all slices": {"planes": ["axial"], "eval_slices": "all"},
    "tri-planar, all slices": {"planes": TRI, "eval_slices": "all"},
    "axial, brain slices": {"planes": ["axial"], "eval_slices": "brain"},
    "tri-planar, brain slices": {"planes": TRI, "eval_slices": "brain"},
}
STAGES = {  # (file suffix, function) -> stage shown by --profile
    ("volume_slices.py", "__getitem__"): "slice reading",
    ("anomalib_module.py", "test_step"): "model test_step",
    ("evaluator.py", "_finalise"): "3D finalise",
    ("evaluator.py", "on_test_epoch_end"): "3D reports",
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stages(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds of each stage of :data:`STAGES` in a profile."""
    found = dict.fromkeys(STAGES.values(), 0.0)
    for (path, _, name), (_, _, _, cumulative, _) in pstats.Stats(profile).stats.items():
        for (suffix, function), stage in STAGES.items():
            if name == function and path.endswith(suffix):
                found[stage] += cumulative
    return found


def main() -> None:
    """Validate once, test each variant ``--repeats`` times alternating, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the four variants (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--profile", action="store_true", help="add a cProfile run per variant: where the time goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    settings = load_settings(CONFIG)
    seed_everything(settings["seed"])
    model = MedCrossModalCLIP(**settings["model"], visualizer=False)
    data = {**settings["data"], "num_workers": 0}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    served: dict[str, int] = {}
    metrics: dict[str, dict[str, float]] = {}
    stages: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as root:
        engine = Engine(default_root_dir=root, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        engine.validate(model, datamodule=DemoBraTS(**data))  # thresholds and normalisation, axial validation
        for round_index in range(args.repeats + args.profile):
            profiled = args.profile and round_index == args.repeats
            for name, options in VARIANTS.items():
                datamodule = DemoBraTS(**{**data, **options})
                profile = cProfile.Profile() if profiled else None
                start_cpu, start_wall = _cpu_seconds(), time.perf_counter()
                if profile is not None:
                    profile.enable()
                metrics[name] = engine.test(model, datamodule=datamodule, verbose=False)[0]
                if profile is not None:
                    profile.disable()
                    stages[name] = {"total": time.perf_counter() - start_wall, **_stages(profile)}
                    continue
                cpu[name].append(_cpu_seconds() - start_cpu)
                wall[name].append(time.perf_counter() - start_wall)
                served[name] = len(datamodule.test_data)
    print(
        f"DemoBraTS test split, MedCrossModalCLIP {settings['model'].get('backbone')} at "
        f"{settings['model'].get('image_size')} px (random weights), torch threads {args.threads}, "
        f"{args.repeats} alternating rounds, medians"
    )
    print(
        f"{'variant':26s} {'slices':>7s} {'CPU s':>7s} {'wall s':>7s} {'CPU ms/slice':>13s} {'3D Dice':>8s}"
        f" {'voxel AUROC':>12s}"
    )
    median = {name: statistics.median(values) for name, values in cpu.items()}
    for name in VARIANTS:
        print(
            f"{name:26s} {served[name]:7d} {median[name]:7.2f} {statistics.median(wall[name]):7.2f}"
            f" {1000 * median[name] / served[name]:13.1f} {metrics[name]['volume3d_dice']:8.4f}"
            f" {metrics[name]['voxel_auroc']:12.4f}"
        )
    for mode in ("all", "brain"):
        axial, tri = f"axial, {mode} slices", f"tri-planar, {mode} slices"
        print(
            f"tri-planar / axial ({mode} slices): CPU {median[tri] / median[axial]:.2f}x, "
            f"slices served {served[tri] / served[axial]:.2f}x (target <= 3.2x)"
        )
    print(
        f"tri-planar (brain slices) / axial (all slices, the study's setting): "
        f"CPU {median['tri-planar, brain slices'] / median['axial, all slices']:.2f}x"
    )
    if stages:
        print(
            f"\nwhere the time goes (one cProfile run each, wall s): {'total':>7s} "
            + " ".join(f"{s:>16s}" for s in STAGES.values())
        )
        for name, found in stages.items():
            print(f"{name:50s} {found['total']:7.2f} " + " ".join(f"{found[s]:16.2f}" for s in STAGES.values()))


if __name__ == "__main__":
    main()
