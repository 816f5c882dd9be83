# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""One brain rule: the slices serve brain_mask(source), and the 2D metrics count the voxels the 3D evaluation counts."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from anomalib_medclip.data import MedSliceBatch, NiftiSliceDataset
from anomalib_medclip.data.nifti import brain_mask, read_volume, slice_to_image
from anomalib_medclip.volumes import EvaluationSettings, finalise_volume, volume_metrics

SHAPE = (16, 14, 5)


@pytest.fixture
def scan(tmp_path: Path) -> tuple[Path, Path]:
    """A brain with dim voxels (below the slice's 0.5th percentile: served as 0 after scaling) and a lesion."""
    rng = np.random.default_rng(1)
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE)[:, None, None, None] - 1) / 2
    brain = (((grid - centre) / (np.array(SHAPE)[:, None, None, None] / 2.2)) ** 2).sum(0) < 1
    image = np.where(brain, 100 + 50 * rng.random(SHAPE), 0.0).astype(np.float32)
    image[brain & (rng.random(SHAPE) < 0.1)] = 0.01  # dim brain voxels
    seg = np.zeros(SHAPE, np.uint8)
    seg[3:9, 4:9, 1:4] = 1
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    paths = tmp_path / "case-t2w.nii.gz", tmp_path / "case-seg.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), paths[0])
    nib.save(nib.Nifti1Image(seg, affine), paths[1])
    return paths


def _dataset(image: Path, seg: Path) -> NiftiSliceDataset:
    samples = pd.DataFrame(
        {
            "image_path": str(image), "mask_path": str(seg), "label_index": 1, "volume_id": "case",
            "volume_index": 0, "slice_index": range(SHAPE[2]), "split": "test",
        }
    )  # fmt: skip
    samples.attrs["task"] = "segmentation"
    return NiftiSliceDataset(samples)


def test_slices_serve_the_brain_of_the_source_intensities(scan: tuple[Path, Path]) -> None:
    dataset = _dataset(*scan)
    source = read_volume(scan[0]).data
    dim = 0
    for z in range(SHAPE[2]):
        item = dataset[z]
        expected = slice_to_image(source[:, :, z] > 0)
        assert torch.equal(item.brain_mask, torch.from_numpy(expected))
        assert np.array_equal(brain_mask(source[:, :, z]), source[:, :, z] > 0)
        dim += int((expected & (item.image[0].numpy() == 0)).sum())
    assert dim > 0, "the served image shows some brain voxels as background: it cannot carry the brain rule"


def test_2d_metrics_count_the_voxels_of_the_3d_evaluation(scan: tuple[Path, Path]) -> None:
    """At native resolution the per-volume statistics of volume_metrics() equal finalise_volume's (brain_only)."""
    dataset = _dataset(*scan)
    rng = np.random.default_rng(2)
    items = [dataset[z] for z in range(SHAPE[2])]
    maps = {z: rng.random(item.image.shape[-2:]).astype(np.float32) for z, item in enumerate(items)}
    batch = MedSliceBatch.collate(items).update(
        anomaly_map=torch.from_numpy(np.stack([maps[z] for z in range(SHAPE[2])])),
        pred_mask=torch.from_numpy(np.stack([maps[z] > 0.5 for z in range(SHAPE[2])])),
    )
    metrics = volume_metrics()
    for metric in metrics:
        metric.update(batch)
    gt = read_volume(scan[1]).data > 0
    result = finalise_volume(maps, read_volume(scan[0]), gt, EvaluationSettings())
    expected = [result.scores.dice, result.scores.sensitivity, result.scores.specificity, result.scores.ppv]
    assert [float(m.compute()) for m in metrics] == pytest.approx(expected, rel=1e-6)
    everywhere = volume_metrics(brain_only=False)[2]
    everywhere.update(batch)
    assert float(everywhere.compute()) != pytest.approx(result.scores.specificity)  # the brain mask matters here
