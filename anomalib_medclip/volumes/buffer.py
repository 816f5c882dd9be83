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
        maps: Anomaly map per ``slice_index`` of the axial slices (served orientation, model resolution, float16).
        scores: Slice score per ``slice_index`` of the axial slices (empty when the batches had no ``pred_score``).
        image_path: The source scan.
        mask_path: Its segmentation, or ``None`` (unlabelled scans).
        plane_maps: The same as ``maps`` for the coronal and sagittal slices, per plane (tri-planar inference).
        plane_scores: The same as ``scores`` for the coronal and sagittal slices, per plane.
    """

    maps: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    image_path: str | None = None
    mask_path: str | None = None
    plane_maps: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    plane_scores: dict[str, dict[int, float]] = field(default_factory=dict)

    def merge(self, other: BufferedVolume) -> None:
        """Add another process's slices of the same volume (a slice present in both counts once)."""
        self.maps.update(other.maps)
        self.scores.update(other.scores)
        for plane, maps in other.plane_maps.items():
            self.plane_maps.setdefault(plane, {}).update(maps)
        for plane, scores in other.plane_scores.items():
            self.plane_scores.setdefault(plane, {}).update(scores)
        self.image_path = other.image_path or self.image_path
        self.mask_path = other.mask_path or self.mask_path

    def __len__(self) -> int:
        """Slices held, all planes."""
        return len(self.maps) + sum(len(maps) for maps in self.plane_maps.values())

    def by_plane(self) -> dict[str, dict[int, np.ndarray]]:
        """Maps per served plane (``{"axial": maps}`` for axial-only data), what ``finalise_volume`` takes."""
        return {**({"axial": self.maps} if self.maps else {}), **self.plane_maps}

    def all_scores(self) -> list[float]:
        """Every slice score, all planes."""
        return [*self.scores.values(), *(v for scores in self.plane_scores.values() for v in scores.values())]

    def slot(self, plane: str) -> tuple[dict[int, np.ndarray], dict[int, float]]:
        """Where the maps and scores of a plane's slices go."""
        if plane == "axial":
            return self.maps, self.scores
        return self.plane_maps.setdefault(plane, {}), self.plane_scores.setdefault(plane, {})


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
        planes = getattr(batch, "plane", None) or ["axial"] * len(batch.volume_id)
        completed = []
        for index, volume_id in enumerate(batch.volume_id):
            if volume_id in self._done:  # a repeated slice (padding of a DistributedSampler) of a finished volume
                continue
            volume, z = self._volumes[volume_id], int(batch.slice_index[index])
            plane_maps, plane_scores = volume.slot(planes[index])
            plane_maps[z] = maps[index].numpy().astype(np.float16)
            if scores is not None:
                plane_scores[z] = float(scores[index])
            volume.image_path = batch.image_path[index]
            volume.mask_path = batch.mask_path[index] if batch.mask_path else None
            if len(volume) == self._expected.get(volume_id, -1):
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
