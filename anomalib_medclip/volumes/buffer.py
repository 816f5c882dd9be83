# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Slice buffering per volume: which volumes are complete, and the regrouping of split volumes under DDP.

Slices arrive in any order, volumes interleaved, possibly spread over several processes. :class:`SliceBuffer` keeps
each slice's map (float16, model resolution) and score by ``slice_index`` until its volume is handed out:

- as soon as it holds every slice the datamodule serves for that volume (:meth:`SliceBuffer.expect`), so memory
  stays bounded by the volumes in flight;
- else at epoch end (:meth:`SliceBuffer.pending`), after :meth:`SliceBuffer.gather_to_rank_zero` moved every
  process's slices of the volumes it still holds to rank 0, merged by ``slice_index`` (a slice served twice counts
  once).

A volume handed out is remembered, so a late repeated slice (the padding of a ``DistributedSampler``) never re-opens
it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch.distributed as dist

__all__ = ["BufferedVolume", "SliceBuffer"]


@dataclass
class BufferedVolume:
    """The slices of one volume received so far.

    Attributes:
        maps: Anomaly map per ``slice_index`` (served orientation, model resolution, float16).
        scores: Slice score per ``slice_index`` (empty when the batches had no ``pred_score``).
        image_path: The source scan.
        mask_path: Its segmentation, or ``None`` (unlabelled scans).
    """

    maps: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    image_path: str | None = None
    mask_path: str | None = None

    def merge(self, other: BufferedVolume) -> None:
        """Add another process's slices of the same volume (a slice present in both counts once)."""
        self.maps.update(other.maps)
        self.scores.update(other.scores)
        self.image_path = other.image_path or self.image_path
        self.mask_path = other.mask_path or self.mask_path


class SliceBuffer:
    """Slice maps of the volumes in flight, keyed by ``volume_id`` (see the module docstring)."""

    def __init__(self) -> None:
        self._volumes: dict[str, BufferedVolume] = defaultdict(BufferedVolume)
        self._expected: dict[str, int] = {}
        self._done: set[str] = set()

    def expect(self, samples: pd.DataFrame | None) -> None:
        """Learn how many slices each volume has from a slice table with a ``volume_id`` column (else: unknown)."""
        if samples is not None and "volume_id" in samples:
            self._expected = samples.groupby("volume_id").size().to_dict()

    def add(self, batch: Any) -> list[str]:
        """Buffer a post-processed slice batch; return the volumes it completed (in order of completion).

        Batches without ``volume_id`` or ``anomaly_map`` (plain 2D data) are ignored.
        """
        if getattr(batch, "volume_id", None) is None or batch.anomaly_map is None:
            return []
        maps = batch.anomaly_map.detach().float().cpu().reshape(len(batch.volume_id), *batch.anomaly_map.shape[-2:])
        scores = batch.pred_score.detach().float().cpu() if batch.pred_score is not None else None
        completed = []
        for index, volume_id in enumerate(batch.volume_id):
            if volume_id in self._done:  # a repeated slice (padding of a DistributedSampler) of a finished volume
                continue
            volume, z = self._volumes[volume_id], int(batch.slice_index[index])
            volume.maps[z] = maps[index].numpy().astype(np.float16)
            if scores is not None:
                volume.scores[z] = float(scores[index])
            volume.image_path = batch.image_path[index]
            volume.mask_path = batch.mask_path[index] if batch.mask_path else None
            if len(volume.maps) == self._expected.get(volume_id, -1):
                completed.append(volume_id)
        return completed

    def pop(self, volume_id: str) -> BufferedVolume:
        """Hand a volume out and remember it as done."""
        self._done.add(volume_id)
        return self._volumes.pop(volume_id)

    def pending(self) -> list[str]:
        """Volumes still held, sorted (the same order on every process)."""
        return sorted(self._volumes)

    def gather_to_rank_zero(self) -> None:
        """Move every process's buffered slices to rank 0, one volume at a time (bounded transfer size).

        Lightning's ``strategy.all_gather`` needs equal tensor shapes on every process and would copy each volume to
        all of them; the slices of a volume differ in number per process, so ``torch.distributed.gather_object``
        sends them to rank 0 only. Every process must call this (it runs collectives).
        """
        held: list[list[str]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(held, self.pending())
        for volume_id in sorted(set().union(*held)):  # the same sequence of collectives on every process
            local = self._volumes.pop(volume_id, None)
            parts: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
            dist.gather_object(local, parts, dst=0)
            if volume_id in self._done:  # rank 0 finished it already: what arrived are repeated slices
                continue
            for part in parts or []:
                if part is not None:
                    self._volumes[volume_id].merge(part)
