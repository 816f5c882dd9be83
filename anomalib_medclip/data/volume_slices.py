# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""A dataset that serves slices of NIfTI volumes (axial, coronal or sagittal) as :class:`MedSliceItem`.

The slice table (one row per slice: ``image_path`` = volume file, ``mask_path`` = label volume or ``""``,
``label_index``, ``volume_id``, ``volume_index``, ``slice_index``, ``split``, and optionally ``plane``, axial when
absent, and ``channel_paths``) is built by the dataset-specific ``make_*_dataset`` functions
(:mod:`anomalib_medclip.data.brats`); this module only reads it. Slice ``k`` of a plane is
:func:`~anomalib_medclip.data.nifti.plane_slice` (axial ``data[:, :, k]``, coronal ``data[:, k, :]``, sagittal
``data[k, :, :]``), and each item carries its ``plane`` and ``slice_index``.

CLIP's three input channels (``channels``):

- ``repeat`` (default): the slice, repeated; scaled between the 0.5th and 99.5th percentiles of its non-zero voxels;
- ``adjacent`` (2.5D): slices ``k - 1``, ``k``, ``k + 1`` of the same plane (the edge slices repeat themselves), all
  three scaled with the centre slice's percentiles, so that the through-plane contrast is kept;
- ``sequences``: the same slice of three co-registered sequences (``channel_paths``, the first is ``image_path``,
  the reference), each scaled with its own slice's percentiles (their contrasts differ).

The brain mask and the 3D evaluation use the reference (centre / first) channel's source intensities. Volumes
are decoded lazily with :func:`~anomalib_medclip.data.nifti.read_volume` and kept in a small LRU cache. Each
DataLoader worker holds its own copy of the dataset and therefore its own cache, so memory stays bounded to
``cache_size`` volumes (plus their label maps) per worker. Slices are served at native in-plane size in the
radiological display orientation of :func:`~anomalib_medclip.data.nifti.slice_to_image`; the model's
``PreProcessor`` resizes and normalises. Each slice also carries its ``brain_mask``
(:func:`~anomalib_medclip.data.nifti.brain_mask` of the source intensities, same size and orientation as the
served image). The served ``gt_mask`` is
:func:`~anomalib_medclip.data.nifti.lesion_mask` of :func:`~anomalib_medclip.data.nifti.read_label_map`, the rule
that also gives the table's slice labels and the 3D ground truth.

Example:
    >>> from anomalib_medclip.data import BraTS
    >>> datamodule = BraTS(root="datasets/BraTS-MET")  # doctest: +SKIP
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anomalib.data import AnomalibDataset
from anomalib.data.utils import LabelName
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Mask

from anomalib_medclip.data.dataclasses import MedSliceBatch, MedSliceItem
from anomalib_medclip.data.nifti import (
    PLANE_AXES,
    PLANES,
    brain_mask,
    lesion_mask,
    plane_slice,
    read_label_map,
    read_volume,
)

__all__ = [
    "CHANNELS",
    "CHANNEL_SCALING",
    "SLICE_COLUMNS",
    "Channels",
    "NiftiSliceDataset",
    "VolumeBatchSampler",
    "VolumeEvalLoadersMixin",
    "check_channels",
    "describe_inputs",
    "scale_slice",
]

SLICE_COLUMNS = ("image_path", "mask_path", "label_index", "volume_id", "volume_index", "slice_index", "split")
Channels = Literal["repeat", "adjacent", "sequences"]
CHANNELS: tuple[str, ...] = ("repeat", "adjacent", "sequences")
CHANNEL_SCALING = {
    "repeat": "each slice to [0, 1] between the 0.5th and 99.5th percentiles of its non-zero voxels, repeated",
    "adjacent": "slices k-1, k, k+1 (edges repeat) scaled together with the centre slice's 0.5th/99.5th percentiles",
    "sequences": "each sequence's slice with its own 0.5th/99.5th percentiles of its non-zero voxels",
}


def describe_inputs(
    planes: tuple[str, ...], channels: str, sequences: tuple[str, ...] = (), train_planes: tuple[str, ...] = ("axial",)
) -> dict[str, object]:
    """A datamodule's planes and channels for its ``describe()``, where they differ from the default.

    The default (axial, repeated slice) adds nothing, so that the reports of earlier runs stay the same.
    """
    described: dict[str, object] = {"planes": list(planes)} if tuple(planes) != ("axial",) else {}
    if tuple(train_planes) != ("axial",):
        described["train_planes"] = list(train_planes)
    if channels != "repeat":
        described["channels"] = channels
        if sequences:
            described["sequences"] = list(sequences)
        described["channel_scaling"] = CHANNEL_SCALING[channels]
    return described


def check_channels(channels: str, sequences: object) -> None:
    """Refuse an unknown ``channels`` value, and ``sequences`` without ``channels='sequences'`` or vice versa."""
    if channels not in CHANNELS:
        msg = f"channels={channels!r}; expected one of {list(CHANNELS)}."
        raise ValueError(msg)
    if (channels == "sequences") != bool(sequences):
        msg = (
            f"channels={channels!r} with sequences={sequences!r}: channels='sequences' needs three sequences "
            "(e.g. sequences: [t2f, t1c, t2w]), and sequences are only read with channels='sequences'."
        )
        raise ValueError(msg)


def scale_slice(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale a 2D slice to [0, 1] between percentiles of its non-zero voxels (zero background stays 0).

    Args:
        image: 2D intensity array.
        low: Lower percentile. Defaults to ``0.5``.
        high: Upper percentile. Defaults to ``99.5``.

    Returns:
        ``float32`` array of the same shape in [0, 1]; all zeros for an empty slice, and 1 on the non-zero voxels
        of a constant slice (never NaN).
    """
    return _scale_with(image, image, low, high)


def _scale_with(image: np.ndarray, reference: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """:func:`scale_slice` of ``image`` with the percentiles of ``reference``'s non-zero voxels."""
    foreground = image != 0
    values = reference[reference != 0]
    if values.size == 0:
        return np.zeros(image.shape, dtype=np.float32)
    lo, hi = np.percentile(values, (low, high))
    if hi <= lo:
        return foreground.astype(np.float32)
    scaled = (image - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(scaled, 0.0, 1.0, out=scaled).astype(np.float32, copy=False)


class _VolumeCache:
    """Least-recently-used cache of decoded volumes, keyed by ``(path, kind)``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._store: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, path: str, kind: Literal["image", "mask"]) -> np.ndarray:
        key = (path, kind)
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        array = read_volume(path).data if kind == "image" else lesion_mask(read_label_map(path).data)
        self._store[key] = array
        while len(self._store) > self.size:
            self._store.popitem(last=False)
        return array


class NiftiSliceDataset(AnomalibDataset):
    """Axial slices of NIfTI volumes described by a slice table.

    Unreadable volumes raise a ``ValueError`` naming the file; datasets check headers and label maps when they
    build the table (see ``on_error`` of :func:`~anomalib_medclip.data.brats.make_brats_dataset`).

    Args:
        samples: Slice table with the columns of ``SLICE_COLUMNS`` and ``attrs["task"]`` (``plane`` and, for
            ``channels='sequences'``, ``channel_paths`` optional).
        augmentations: Joint image/mask augmentations. Defaults to ``None``.
        cache_size: Volumes (image and label map each) kept decoded per worker. Defaults to ``4``.
        channels: What fills the three input channels (see the module docstring). Defaults to ``"repeat"``.
    """

    def __init__(
        self,
        samples: pd.DataFrame,
        augmentations: Transform | None = None,
        cache_size: int = 4,
        channels: Channels = "repeat",
    ) -> None:
        super().__init__(augmentations=augmentations)
        if cache_size < 1:
            msg = f"cache_size={cache_size}; expected at least 1 volume per worker."
            raise ValueError(msg)
        if channels not in CHANNELS:
            check_channels(channels, None)
        if channels == "sequences" and "channel_paths" not in samples.columns:
            msg = "channels='sequences' needs a slice table with channel_paths (three sequence files per slice)."
            raise ValueError(msg)
        self.channels = channels
        self._cache = _VolumeCache((4 if channels == "sequences" else 2) * cache_size)
        self.samples = samples

    @AnomalibDataset.samples.setter
    def samples(self, samples: pd.DataFrame) -> None:
        """Set the slice table, kept in ``(image_path, slice_index)`` order (anomalib's own sort is unstable)."""
        missing = [column for column in SLICE_COLUMNS if column not in samples.columns]
        if missing:
            msg = f"Slice table lacks columns {missing}; expected {list(SLICE_COLUMNS)}."
            raise ValueError(msg)
        AnomalibDataset.samples.fset(self, samples)
        if "plane" in self._samples.columns:
            unknown = sorted(set(self._samples.plane) - set(PLANES))
            if unknown:
                msg = f"Slice table has unknown planes {unknown}; expected some of {list(PLANES)}."
                raise ValueError(msg)
            self._samples["plane_order"] = self._samples.plane.map(PLANES.index)
            keys = ["image_path", "plane_order", "slice_index"]
        else:
            keys = ["image_path", "slice_index"]
        ordered = self._samples.sort_values(keys, kind="stable", ignore_index=True).drop(
            columns="plane_order", errors="ignore"
        )
        ordered.attrs = dict(samples.attrs)
        self._samples = ordered

    @property
    def collate_fn(self) -> Callable[[list[MedSliceItem]], MedSliceBatch]:
        """Collate slices into a :class:`MedSliceBatch`."""
        return MedSliceBatch.collate

    def _image(self, row: Any, plane: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The reference slice's source intensities and the 3-channel image of slice ``k`` (see ``channels``)."""
        volume = self._cache.get(row.image_path, "image")
        source = plane_slice(volume, plane, k)
        if self.channels == "repeat":
            return source, np.broadcast_to(scale_slice(source), (3, *source.shape))
        if self.channels == "adjacent":
            depth = volume.shape[PLANE_AXES[plane]]
            slices = [
                source if j == k else plane_slice(volume, plane, min(max(j, 0), depth - 1)) for j in (k - 1, k, k + 1)
            ]
            return source, np.stack([_scale_with(s, source) for s in slices])
        paths = row.channel_paths
        slices = [source, *(plane_slice(self._cache.get(path, "image"), plane, k) for path in paths[1:])]
        return source, np.stack([scale_slice(s) for s in slices])

    def __getitem__(self, index: int) -> MedSliceItem:
        """Serve slice ``index`` as a 3-channel float image in [0, 1] at native in-plane size."""
        row = self.samples.iloc[index]
        z = int(row.slice_index)
        plane = str(getattr(row, "plane", "axial"))
        label = int(row.label_index)
        source, channels = self._image(row, plane, z)
        brain = Mask(torch.from_numpy(brain_mask(source)))
        tensor = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))
        gt_mask = None
        if row.mask_path and label != LabelName.UNKNOWN:
            gt_mask = Mask(torch.from_numpy(plane_slice(self._cache.get(row.mask_path, "mask"), plane, z)))
        if self.augmentations is not None:  # masks follow the image through geometric augmentations
            if gt_mask is None:
                tensor, brain = self.augmentations(tensor, brain)
            else:
                tensor, gt_mask, brain = self.augmentations(tensor, gt_mask, brain)
        return MedSliceItem(
            image=tensor,
            gt_mask=gt_mask,
            gt_label=None if label == LabelName.UNKNOWN else torch.tensor(label),
            image_path=str(row.image_path),
            mask_path=str(row.mask_path) if row.mask_path else None,
            volume_id=str(row.volume_id),
            volume_index=torch.tensor(int(row.volume_index)),
            slice_index=torch.tensor(z),
            brain_mask=brain,
            plane=plane,
        )


class VolumeBatchSampler(BatchSampler):
    """Evaluation batches that stay inside one volume, with every volume read by a single DataLoader worker.

    A DataLoader hands batch ``k`` to worker ``k % num_workers``. With plain sequential batches, consecutive batches
    of one volume go to different workers and every worker decodes every volume (a ``.nii.gz`` decode costs more
    than serving all its slices). Here volumes are assigned to workers (greedily, by batch count) and the batch
    order is interleaved so that position ``k`` holds a batch of worker ``k % num_workers``'s volumes.

    Under DDP, Lightning re-creates this batch sampler with its ``DistributedSampler`` as ``sampler`` (the
    ``BatchSampler`` API); only that sampler's ``num_replicas`` and ``rank`` are used: the per-volume batches, in
    volume order, are cut into ``num_replicas`` contiguous runs of (within one) equal length and this process keeps
    run ``rank``. Every slice is served exactly once (no padding duplicates, unlike ``DistributedSampler``), whole
    volumes stay on one process except at most one at each cut, and evaluation metrics equal a single-process run.

    Args:
        samples: Slice table in serving order (``image_path`` identifies the volume).
        batch_size: Slices per batch.
        num_workers: DataLoader workers (0 or 1: plain per-volume batches).
        sampler: Set by Lightning under DDP (a ``DistributedSampler``); otherwise unused.
        drop_last: Must be ``False``: evaluation never drops slices (the argument exists for Lightning).
    """

    def __init__(
        self,
        samples: pd.DataFrame,
        batch_size: int,
        num_workers: int,
        sampler: Sampler[int] | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size={batch_size}; expected at least 1."
            raise ValueError(msg)
        if drop_last:
            msg = "VolumeBatchSampler never drops slices; drop_last must be False."
            raise ValueError(msg)
        self.batch_size, self.drop_last = batch_size, drop_last
        replicas, rank = (sampler.num_replicas, sampler.rank) if isinstance(sampler, DistributedSampler) else (1, 0)
        # one batch never mixes planes (their slices differ in size); a volume's planes stay with one worker
        planes = samples.plane if "plane" in samples.columns else pd.Series("axial", index=samples.index)
        volume_of = {path: v for v, path in enumerate(dict.fromkeys(samples.image_path))}
        runs = pd.DataFrame({"path": samples.image_path.to_numpy(), "plane": planes.to_numpy()})
        ordered = [
            (volume_of[path], list(p[i : i + batch_size]))
            for (path, _), p in runs.groupby(["path", "plane"], sort=False).indices.items()
            for i in range(0, len(p), batch_size)
        ]
        mine = ordered[rank * len(ordered) // replicas : (rank + 1) * len(ordered) // replicas]
        volumes: dict[int, list[list[int]]] = {}
        for volume, batch in mine:
            volumes.setdefault(volume, []).append(batch)
        queues: list[list[list[int]]] = [[] for _ in range(max(1, num_workers))]
        for batches in sorted(volumes.values(), key=len, reverse=True):
            min(queues, key=len).extend(batches)
        self._batches: list[list[int]] = []
        while any(queues):
            for queue in queues:
                # an exhausted worker's turn is taken from the longest queue (its volume is then decoded twice)
                source = queue or max(queues, key=len)
                if source:
                    self._batches.append(source.pop(0))

    def __iter__(self):
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)


class VolumeEvalLoadersMixin:
    """Validation/test (and so predict) loaders of a volumetric datamodule use :class:`VolumeBatchSampler`."""

    def _volume_loader(self, dataset: NiftiSliceDataset) -> DataLoader:
        sampler = VolumeBatchSampler(dataset.samples, self.eval_batch_size, self.num_workers)
        collate = self.external_collate_fn or dataset.collate_fn
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        """Validation slices, volume by volume."""
        return self._volume_loader(self.val_data)

    def test_dataloader(self) -> DataLoader:
        """Test slices, volume by volume."""
        return self._volume_loader(self.test_data)
