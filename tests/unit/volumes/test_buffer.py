# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""SliceBuffer: completeness from the slice table, repeated slices, merging of one volume's parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from anomalib.data import ImageBatch

from anomalib_medclip.data import MedSliceBatch
from anomalib_medclip.volumes import BufferedVolume, SliceBuffer


def _batch(rows: list[tuple[str, int]], with_scores: bool = True) -> MedSliceBatch:
    maps = torch.stack([torch.full((4, 4), float(z) / 10) for _, z in rows])
    return MedSliceBatch(
        image=torch.zeros(len(rows), 3, 4, 4),
        anomaly_map=maps,
        pred_score=maps.flatten(1).amax(1) if with_scores else None,
        image_path=[f"{v}.nii.gz" for v, _ in rows],
        mask_path=[f"{v}-seg.nii.gz" for v, _ in rows],
        volume_id=[v for v, _ in rows],
        volume_index=torch.tensor([int(v[-1]) for v, _ in rows]),
        slice_index=torch.tensor([z for _, z in rows]),
    )


def test_volumes_complete_when_their_last_slice_arrives() -> None:
    buffer = SliceBuffer()
    buffer.expect(pd.DataFrame({"volume_id": ["v0"] * 3 + ["v1"] * 2}))
    assert buffer.add(_batch([("v0", 2), ("v1", 0), ("v0", 0)])) == []
    assert buffer.add(_batch([("v1", 1), ("v0", 1)])) == ["v1", "v0"]
    volume = buffer.pop("v0")
    assert sorted(volume.maps) == [0, 1, 2]
    assert volume.maps[2].dtype == np.float16
    assert np.allclose(volume.maps[2], 0.2, atol=1e-3)
    assert volume.scores[1] == np.float32(0.1)
    assert (volume.image_path, volume.mask_path) == ("v0.nii.gz", "v0-seg.nii.gz")
    assert buffer.pending() == ["v1"]
    assert buffer.add(_batch([("v0", 1)])) == []  # a repeat of a finished volume never re-opens it
    assert buffer.pending() == ["v1"]


def test_without_slice_counts_volumes_wait_for_epoch_end() -> None:
    buffer = SliceBuffer()
    buffer.expect(None)
    assert buffer.add(_batch([("v1", 0), ("v0", 0)], with_scores=False)) == []
    assert buffer.pending() == ["v0", "v1"]
    assert buffer.pop("v1").scores == {}


def test_batches_without_volume_identity_are_ignored() -> None:
    buffer = SliceBuffer()
    assert buffer.add(ImageBatch(image=torch.rand(2, 3, 4, 4), anomaly_map=torch.rand(2, 4, 4))) == []
    assert buffer.pending() == []


def test_parts_of_a_volume_merge_by_slice_index() -> None:
    """What rank 0 does with the parts gathered from each process: a slice served twice counts once."""
    part = [BufferedVolume({0: np.zeros(2), 1: np.ones(2)}, {0: 0.0, 1: 1.0}, "v.nii.gz", "v-seg.nii.gz")]
    part.append(BufferedVolume({1: np.ones(2), 2: np.full(2, 2.0)}, {1: 1.0, 2: 2.0}, "v.nii.gz", "v-seg.nii.gz"))
    merged = BufferedVolume()
    for p in part:
        merged.merge(p)
    assert sorted(merged.maps) == [0, 1, 2]
    assert merged.scores == {0: 0.0, 1: 1.0, 2: 2.0}
    assert (merged.image_path, merged.mask_path) == ("v.nii.gz", "v-seg.nii.gz")
