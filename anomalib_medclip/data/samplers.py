# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Shuffled training batches that never mix groups of a dataset (slice planes, BMAD source categories).

Used where one batch must not hold items of two kinds: slices of different planes differ in size (anomalib's collate
would stretch them to one size before the pre-processor resizes them again), and MedBMAD's leave-one-out pool holds
images with masks (segmentation categories) and without (classification categories), which anomalib's collate cannot
stack into one batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, Sampler

__all__ = ["GroupedBatchSampler", "grouped_train_loader"]


class GroupedBatchSampler(BatchSampler):
    """Shuffled training batches that never mix groups.

    Each epoch every group's indices are shuffled and cut into batches, and the batch order is shuffled; groups are
    taken in order of first appearance in ``groups``.

    Under DDP, Lightning re-creates this batch sampler with its ``DistributedSampler`` as ``sampler``; its
    ``num_replicas``, ``rank``, ``seed``, ``epoch`` and ``shuffle`` are used: every process draws the same batches
    (seeded by ``seed + epoch``) and keeps every ``num_replicas``-th one, the list padded with its first batches so
    that every process runs the same number of steps. Otherwise the shuffle is seeded from torch's global generator
    (as ``RandomSampler`` does, so ``seed_everything`` makes it reproducible), and a non-random ``sampler`` keeps the
    table order.

    Args:
        sampler: ``RandomSampler`` (shuffled), another sampler (table order) or, set by Lightning, a
            ``DistributedSampler``.
        batch_size: Items per batch.
        drop_last: Drop each group's last incomplete batch. Defaults to ``False``.
        groups: The group of each dataset index (e.g. its slice plane). Defaults to ``()``.
    """

    def __init__(
        self, sampler: Sampler[int], batch_size: int, drop_last: bool = False, groups: Sequence[Hashable] = ()
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.groups = np.asarray(groups, dtype=object)
        self._counts = pd.Series(self.groups).value_counts(sort=False).to_numpy() if len(self.groups) else []

    def _layout(self) -> tuple[int, int, torch.Generator | None]:
        """``(num_replicas, rank, generator)``; the generator is ``None`` for table order."""
        sampler = self.sampler
        if isinstance(sampler, DistributedSampler):
            if not sampler.shuffle:
                return sampler.num_replicas, sampler.rank, None
            return sampler.num_replicas, sampler.rank, torch.Generator().manual_seed(sampler.seed + sampler.epoch)
        if isinstance(sampler, RandomSampler):
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            return 1, 0, torch.Generator().manual_seed(seed)
        return 1, 0, None

    def __iter__(self):
        replicas, rank, generator = self._layout()
        batches: list[list[int]] = []
        for group in dict.fromkeys(self.groups):
            indices = np.flatnonzero(self.groups == group)
            if generator is not None:
                indices = indices[torch.randperm(len(indices), generator=generator).numpy()]
            stop = len(indices) - len(indices) % self.batch_size if self.drop_last else len(indices)
            batches += [indices[i : i + self.batch_size].tolist() for i in range(0, stop, self.batch_size)]
        if generator is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        batches += [batches[i % len(batches)] for i in range(len(self) * replicas - len(batches))]
        return iter(batches[rank::replicas])

    def __len__(self) -> int:
        replicas = self.sampler.num_replicas if isinstance(self.sampler, DistributedSampler) else 1
        size = self.batch_size
        total = sum(n // size if self.drop_last else -(-n // size) for n in self._counts)
        return -(-total // replicas)


def grouped_train_loader(datamodule: Any, groups: Sequence[Hashable]) -> DataLoader:
    """An anomalib datamodule's shuffled train loader, with :class:`GroupedBatchSampler` batches of one group each.

    Args:
        datamodule: An ``AnomalibDataModule`` after ``setup`` (its ``train_data``, ``train_batch_size``,
            ``num_workers`` and collate are used).
        groups: The group of each training index.

    Returns:
        The ``DataLoader``; Lightning wraps its batch sampler's ``sampler`` under DDP.
    """
    dataset = datamodule.train_data
    sampler = GroupedBatchSampler(RandomSampler(dataset), datamodule.train_batch_size, groups=groups)
    collate = datamodule.external_collate_fn or dataset.collate_fn
    return DataLoader(dataset, batch_sampler=sampler, num_workers=datamodule.num_workers, collate_fn=collate)
