# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the 3D evaluation: peak extra memory for many BraTS-sized volumes and time per volume.

Feeds ``VolumeEvaluator`` synthetic post-processed slice batches (224x224 maps, 32 slices a batch, volume after
volume as the datamodules serve them) for ``--volumes`` volumes of 240x240x155 voxels, all backed by one generated
scan and segmentation on disk, and prints:

- the peak resident memory above the baseline (process after imports and one warm-up volume), which must stay
  below 1 GiB and not grow with the number of volumes (volumes are finalised as soon as they are complete);
- the wall time per volume of the volumetric post-processing (stacking + resizing, metrics, voxel curves), and
  separately of writing the two NIfTI files and of the whole per-volume step.

Usage:
    python benchmarks/bench_volume_eval.py --volumes 50
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from anomalib_medclip.data import MedSliceBatch
from anomalib_medclip.data.nifti import read_volume
from anomalib_medclip.volumes import VolumeEvaluator, VoxelCurves, dice_2d_mean, stack_slices, volume_scores

SHAPE, MODEL_SIZE, BATCH = (240, 240, 155), 224, 32


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scan(root: Path) -> tuple[Path, Path]:
    grid = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    radius = sum(((g - s / 2) / (s / 2.4)) ** 2 for g, s in zip(grid, SHAPE, strict=True))
    image = np.where(radius < 1, 100 + 50 * np.cos(radius * 6), 0).astype(np.float32)
    lesion = sum(((g - c) / 12) ** 2 for g, c in zip(grid, (100, 130, 80), strict=True)) < 1
    paths = root / "scan.nii.gz", root / "seg.nii.gz"
    nib.save(nib.Nifti1Image(image, np.eye(4)), paths[0])
    nib.save(nib.Nifti1Image(lesion.astype(np.uint8), np.eye(4)), paths[1])
    return paths


def _batches(volume_id: str, paths: tuple[Path, Path], rng: np.random.Generator) -> list[MedSliceBatch]:
    batches = []
    for start in range(0, SHAPE[2], BATCH):
        z = torch.arange(start, min(start + BATCH, SHAPE[2]))
        maps = torch.from_numpy(rng.random((len(z), MODEL_SIZE, MODEL_SIZE), dtype=np.float32)) ** 3
        batches.append(
            MedSliceBatch(
                image=torch.zeros(len(z), 3, 1, 1),
                anomaly_map=maps,
                pred_score=maps.flatten(1).amax(1),
                image_path=[str(paths[0])] * len(z),
                mask_path=[str(paths[1])] * len(z),
                volume_id=[volume_id] * len(z),
                volume_index=torch.zeros(len(z), dtype=torch.long),
                slice_index=z,
            )
        )
    return batches


def _core_seconds(paths: tuple[Path, Path], rng: np.random.Generator) -> float:
    """Stacking (resize + orientation), per-volume metrics and voxel curves for one volume, without file output."""
    maps = {z: rng.random((MODEL_SIZE, MODEL_SIZE)).astype(np.float16) for z in range(SHAPE[2])}
    start = time.perf_counter()
    volume, gt = read_volume(paths[0]), read_volume(paths[1]).data > 0
    score = stack_slices(maps, volume.data.shape)
    counted = volume.data > 0
    pred = (score > 0.5) & counted
    volume_scores(pred, gt, counted)
    dice_2d_mean(pred, gt, counted)
    VoxelCurves().update(torch.from_numpy(score[counted]), torch.from_numpy(gt[counted]))
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = _scan(Path(tmp))
        core = [_core_seconds(paths, rng) for _ in range(3)]
        ids = [f"vol{i:03d}" for i in range(args.volumes + 1)]
        samples = pd.DataFrame({"volume_id": np.repeat(ids, SHAPE[2])})
        trainer = SimpleNamespace(
            default_root_dir=Path(tmp) / "run",
            datamodule=SimpleNamespace(test_data=SimpleNamespace(samples=samples)),
            is_global_zero=True,
            world_size=1,  # one process (the DDP paths are tested in tests/unit/volumes/test_ddp.py)
        )
        module = SimpleNamespace(log=lambda *_, **__: None, hparams={})
        evaluator = VolumeEvaluator(brats_official=False)
        evaluator.on_test_start(trainer, module)
        peaks, times = [], []
        for index, volume_id in enumerate(ids):
            batches = _batches(volume_id, paths, rng)
            start = time.perf_counter()
            for batch in batches:
                evaluator.on_test_batch_end(trainer, module, None, batch, 0)
            times.append(time.perf_counter() - start)
            if index == 0:
                baseline = _peak_rss_mib()  # after imports and one warm-up volume
            peaks.append(_peak_rss_mib() - baseline)
        evaluator.on_test_epoch_end(trainer, module)
    print(f"volumes: {args.volumes} x {SHAPE} voxels, maps {MODEL_SIZE}x{MODEL_SIZE}, batch {BATCH}")
    print(f"baseline peak RSS: {baseline:.0f} MiB")
    quarter = max(1, args.volumes // 4)
    print(
        f"peak extra RSS after {quarter} volumes: {peaks[quarter]:.0f} MiB; after {args.volumes}: {peaks[-1]:.0f} MiB"
    )
    print(f"post-processing per volume (stack + resize + metrics + curves): {np.median(core):.3f} s (median of 3)")
    print(f"whole per-volume step incl. reading the scan and writing 2 NIfTI files: {np.median(times[1:]):.3f} s")


if __name__ == "__main__":
    main()
