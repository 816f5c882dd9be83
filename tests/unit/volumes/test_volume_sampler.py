# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Volume batches under a ``DistributedSampler``: every slice once, contiguous runs (no processes are started).

The two-process DDP run is in ``tests/integration/volumes/test_ddp.py``.
"""

from __future__ import annotations

import pandas as pd
import pytest
from torch.utils.data import DistributedSampler

from anomalib_medclip.data.volume_slices import VolumeBatchSampler


def _batches(samples: pd.DataFrame, rank: int, replicas: int = 2) -> list[list[int]]:
    sampler = DistributedSampler(range(len(samples)), num_replicas=replicas, rank=rank, shuffle=False)
    return list(VolumeBatchSampler(samples, 3, num_workers=2, sampler=sampler))


@pytest.mark.parametrize("lengths", [[8, 7, 9], [5], [4, 4, 4, 4]])
def test_sampler_shards_volume_batches_without_repeats(lengths: list[int]) -> None:
    paths = [f"v{i}.nii.gz" for i, n in enumerate(lengths) for _ in range(n)]
    samples = pd.DataFrame({"image_path": paths})
    ranks = [_batches(samples, rank) for rank in range(2)]
    served = [i for batches in ranks for batch in batches for i in batch]
    assert sorted(served) == list(range(len(paths)))  # every slice once: no DistributedSampler padding
    assert abs(len(ranks[0]) - len(ranks[1])) <= 1
    assert all(len({paths[i] for i in batch}) == 1 for batches in ranks for batch in batches)
    shared = {paths[i] for b in ranks[0] for i in b} & {paths[i] for b in ranks[1] for i in b}
    assert len(shared) <= 1  # contiguous runs: only the volume at the cut is split
