# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the 3D evaluation: peak extra memory for many BraTS-sized volumes and time per volume.

Feeds ``VolumeEvaluator`` synthetic post-processed slice batches (224x224 maps, 32 slices a batch, volume after
volume as the datamodules serve them) for ``--volumes`` volumes of 240x240x155 voxels, all backed by one generated
scan and segmentation on disk, and prints:

- the peak resident memory above the baseline (process after imports and one warm-up volume), which must stay
  below 1 GiB and not grow with the number of volumes (volumes are finalised as soon as they are complete);
- the wall time per volume of the volumetric post-processing (stacking + resizing, metrics, voxel curves), and
  separately of writing the two NIfTI files and of the whole per-volume step;
- cost against size (issue 15): CPU time of evaluating one volume (reading the scan and segmentation, stacking,
  post-processing, thresholding, metrics, voxel curves; NIfTI writing reported apart) for a 240x240x155 and a
  512x512x176 volume (brain = the same 17 % of the voxels, as in BraTS), with the default chain and the UAD chain
  (``postprocess='uad'``), each measured in a fresh process (``spawn``) so that its peak extra resident memory is
  its own; the ratios of the two sizes are printed from the same run. Targets: ratio <= 6 for 5.1x the voxels,
  <= 0.5 s (default) and <= 1.5 s (UAD) per 240x240x155 volume, peak extra memory < 1 GiB at 512x512x176.

Usage:
    python benchmarks/bench_volume_eval.py --volumes 50
    python benchmarks/bench_volume_eval.py --volumes 0 --repeats 3   # only the cost-against-size figures
"""

from __future__ import annotations

import argparse
import multiprocessing
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
from anomalib_medclip.volumes import (
    EvaluationSettings,
    VolumeEvaluator,
    VoxelCurves,
    dice_2d_mean,
    finalise_volume,
    read_ground_truth,
    stack_slices,
    volume_scores,
)

SHAPE, MODEL_SIZE, BATCH = (240, 240, 155), 224, 32
SIZES = ((240, 240, 155), (512, 512, 176))
CHAINS = {"default": EvaluationSettings(brats_official=False), "uad": EvaluationSettings(postprocess="uad")}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak since the last reset) of this process, Linux only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    msg = f"/proc/self/status has no {field}"
    raise OSError(msg)


def _reset_peak() -> float:
    """Reset the peak resident memory (``clear_refs`` 5) and return the current one, the baseline."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def _scan(root: Path, shape: tuple[int, int, int] = SHAPE, semi_axis: float = 2.4) -> tuple[Path, Path]:
    grid = np.ogrid[: shape[0], : shape[1], : shape[2]]
    radius = sum(((g - s / 2) / (s / semi_axis)) ** 2 for g, s in zip(grid, shape, strict=True))
    image = np.where(radius < 1, 100 + 50 * np.cos(radius * 6), 0).astype(np.float32)
    centre = (s * c for s, c in zip(shape, (0.42, 0.54, 0.52), strict=True))
    lesion = sum(((g - c) / (s / 20)) ** 2 for g, c, s in zip(grid, centre, shape, strict=True)) < 1
    paths = root / f"scan{shape[0]}.nii.gz", root / f"seg{shape[0]}.nii.gz"
    nib.save(nib.Nifti1Image(image, np.eye(4)), paths[0])
    nib.save(nib.Nifti1Image(lesion.astype(np.uint8), np.eye(4)), paths[1])
    return paths


def _size_cost(paths: tuple[Path, Path], chain: str, repeats: int, queue: multiprocessing.Queue) -> None:
    """In a fresh process: median CPU seconds of evaluating one volume, and the peak extra resident memory."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    depth = nib.load(paths[0]).shape[2]
    maps = {z: (rng.random((MODEL_SIZE, MODEL_SIZE), dtype=np.float32) ** 3).astype(np.float16) for z in range(depth)}
    settings = CHAINS[chain].replace(brats_official=False)
    baseline = _reset_peak()
    with tempfile.TemporaryDirectory() as tmp:
        cpu, writing = [], []
        for _ in range(repeats):
            start = time.process_time()
            image = read_volume(paths[0])
            gt = read_ground_truth(paths[1], image)
            result = finalise_volume(maps, image, gt, settings, val_threshold=0.5)
            scores, labels = result.counted_voxels()
            VoxelCurves(sync_on_compute=False).update(torch.from_numpy(scores), torch.from_numpy(labels))
            cpu.append(time.process_time() - start)
            start = time.process_time()
            nib.save(nib.Nifti1Image(result.score, image.affine), Path(tmp) / "map.nii.gz")
            nib.save(nib.Nifti1Image(result.pred.astype(np.uint8), image.affine), Path(tmp) / "pred.nii.gz")
            writing.append(time.process_time() - start)
            del image, gt, result, scores, labels
        peak = _status_mib("VmHWM") - baseline
    queue.put((float(np.median(cpu)), float(np.median(writing)), peak))


def _cost_against_size(repeats: int) -> None:
    """Print the per-volume CPU time and peak memory for both sizes and chains, and the ratios."""
    context = multiprocessing.get_context("spawn")
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        scans = {shape: _scan(Path(tmp), shape, semi_axis=2.9) for shape in SIZES}  # ellipsoid brain, 17 % of voxels
        fraction = float((read_volume(scans[SIZES[0]][0]).data > 0).mean())
        for chain in CHAINS:
            for shape in SIZES:
                queue = context.Queue()
                process = context.Process(target=_size_cost, args=(scans[shape], chain, repeats, queue))
                process.start()
                figures[chain, shape] = queue.get()
                process.join()
    voxels = np.prod(SIZES[1]) / np.prod(SIZES[0])
    print(f"cost against size (CPU s per volume, median of {repeats}, 1 thread, brain = {fraction:.0%} of the voxels)")
    for chain in CHAINS:
        small, large = figures[chain, SIZES[0]], figures[chain, SIZES[1]]
        print(
            f"  {chain:8s} {SIZES[0]}: {small[0]:.3f} s (+{small[1]:.2f} s writing 2 NIfTI), peak extra "
            f"{small[2]:.0f} MiB | {SIZES[1]}: {large[0]:.3f} s (+{large[1]:.2f} s writing), peak extra "
            f"{large[2]:.0f} MiB | ratio {large[0] / small[0]:.2f}x for {voxels:.2f}x the voxels"
        )


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
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the cost-against-size measurement")
    args = parser.parse_args()
    _cost_against_size(args.repeats)
    if args.volumes < 1:
        return
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
