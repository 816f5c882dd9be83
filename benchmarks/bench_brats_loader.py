# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Throughput and peak memory of the BraTS slice loader on full-size (240x240x155) volumes.

Writes a few synthetic BraTS-MET cases into a temporary folder, then iterates the test-order DataLoader of
:class:`anomalib_medclip.data.BraTS` (2 workers by default) and prints slices/s and peak resident memory of the
main process and its workers. Target: >= 500 slices/s on 2 CPU cores.

Usage:
    python benchmarks/bench_brats_loader.py [--cases 4] [--workers 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from anomalib_medclip.data import BraTS

SHAPE = (240, 240, 155)


def write_cases(root: Path, n_cases: int) -> None:
    """Write ``n_cases`` BraTS-MET cases (int16 images, uint8 segs with one lesion each)."""
    rng = np.random.default_rng(0)
    grid = np.indices(SHAPE, sparse=True)
    for index in range(n_cases):
        case = root / f"BraTS-MET-{index:05d}-000"
        case.mkdir(parents=True)
        brain = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, (120, 120, 77), (80, 95, 65), strict=True)) <= 1
        image = (rng.normal(500, 80, SHAPE) * brain).astype(np.int16)
        seg = np.zeros(SHAPE, np.uint8)
        seg[100:130, 90:120, 60:90] = 2
        for modality in ("t1n", "t1c", "t2w", "t2f"):
            nib.save(nib.Nifti1Image(image, np.eye(4)), case / f"{case.name}-{modality}.nii.gz")
        nib.save(nib.Nifti1Image(seg, np.eye(4)), case / f"{case.name}-seg.nii.gz")


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_cases(Path(tmp), args.cases)
        datamodule = BraTS(
            tmp, num_workers=args.workers, eval_batch_size=args.batch_size, test_ratio=1.0, val_ratio=0.0
        )
        start = time.perf_counter()
        datamodule.setup()
        setup_s = time.perf_counter() - start
        start = time.perf_counter()
        n_slices = sum(len(batch.image) for batch in datamodule.test_dataloader())
        elapsed = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"volumes: {args.cases} x {SHAPE}, workers: {args.workers}, batch size: {args.batch_size}")
    print(f"setup (seg scan of {args.cases} cases): {setup_s:.2f} s")
    print(f"slices: {n_slices} in {elapsed:.2f} s = {n_slices / elapsed:.0f} slices/s")
    print(f"peak RSS: main {own:.0f} MiB, largest worker {children:.0f} MiB")


if __name__ == "__main__":
    main()
