# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Tri-planar slices, 2.5D and multi-sequence channels: served items, stacking back, fusion, batching."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from anomalib_medclip.data import BraTS, MedSliceBatch, NiftiScans
from anomalib_medclip.data.nifti import read_volume
from anomalib_medclip.data.samplers import GroupedBatchSampler
from anomalib_medclip.data.volume_slices import NiftiSliceDataset, VolumeBatchSampler
from anomalib_medclip.volumes import EvaluationSettings, SliceBuffer, finalise_volume, stack_slices

SHAPE = (14, 12, 9)  # source voxel order; the affine permutes and flips axes (not RAS), voxels anisotropic
AFFINE = np.array([[0.0, -1.0, 0, 20], [-1.5, 0, 0, 30], [0, 0, 2.0, -5], [0, 0, 0, 1]])
PLANES = ("axial", "coronal", "sagittal")


def _case(root: Path, name: str = "BraTS-MET-00001-000", marker: dict[str, tuple] | None = None) -> Path:
    """One BraTS-style case with an off-axis lesion; ``marker``: a bright voxel per modality (source indices)."""
    case = root / name
    case.mkdir(parents=True)
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1)[:, None, None, None] / 2
    brain = (((grid - centre) / (np.array(SHAPE)[:, None, None, None] / 2.1)) ** 2).sum(0) < 1
    seg = np.zeros(SHAPE, np.uint8)
    seg[2:5, 7:10, 5:8] = 2  # off every axis through the centre
    seg[~brain] = 0
    for index, modality in enumerate(("t2w", "t2f", "t1c", "t1n")):
        image = np.where(brain, 0.3 + 0.05 * index + 0.01 * grid[0], 0.0).astype(np.float32)
        if marker and modality in marker:
            image[marker[modality]] = 5.0
        nib.save(nib.Nifti1Image(image, AFFINE), case / f"{name}-{modality}.nii.gz")
    nib.save(nib.Nifti1Image(seg, AFFINE), case / f"{name}-seg.nii.gz")
    return case


def _dataset(root: Path, **options: object) -> NiftiSliceDataset:
    datamodule = BraTS(root, num_workers=0, test_ratio=1.0, val_ratio=0.0, **options)
    datamodule.setup()
    return datamodule.test_data


def test_each_plane_reconstructs_the_off_axis_lesion_at_the_same_voxels(tmp_path: Path) -> None:
    case = _case(tmp_path / "brats")
    dataset = _dataset(tmp_path / "brats", planes=["sagittal", "axial", "coronal"])
    truth = read_volume(next(case.glob("*-seg.nii.gz"))).data > 0
    assert truth.any()
    samples = dataset.samples
    assert samples.groupby("plane").size().to_dict() == dict(zip(PLANES, truth.shape[::-1], strict=True))
    maps: dict[str, dict[int, np.ndarray]] = {plane: {} for plane in PLANES}
    for index in range(len(dataset)):
        item = dataset[index]
        maps[item.plane][int(item.slice_index)] = item.gt_mask.numpy().astype(np.float32)
        assert item.image.shape[-2:] == item.gt_mask.shape
    for plane in PLANES:
        assert np.array_equal(stack_slices(maps[plane], truth.shape, plane) > 0.5, truth), plane
    image = read_volume(next(case.glob("*-t2w.nii.gz")))
    result = finalise_volume(maps, image, truth, EvaluationSettings(threshold_policy="fixed", threshold=0.5))
    assert result.scores.dice == 1.0


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_fused_map_is_the_mean_or_max_of_the_planes_computed_independently(tmp_path: Path, fusion: str) -> None:
    case = _case(tmp_path / "brats")
    image = read_volume(next(case.glob("*-t2w.nii.gz")))
    x, y, z = image.data.shape
    rng = np.random.default_rng(0)
    cuts = {"axial": (z, (y, x)), "coronal": (y, (z, x)), "sagittal": (x, (z, y))}
    maps = {p: {k: rng.random(hw).astype(np.float32) for k in range(n)} for p, (n, hw) in cuts.items()}
    independent = {p: np.zeros((x, y, z), np.float32) for p in PLANES}
    for k in range(z):  # served (H, W) = (Y, X): row 0 anterior, column 0 the patient's right
        independent["axial"][:, :, k] = maps["axial"][k][::-1, ::-1].T
    for k in range(y):  # (Z, X): row 0 superior
        independent["coronal"][:, k, :] = maps["coronal"][k][::-1, ::-1].T
    for k in range(x):  # (Z, Y): row 0 superior, column 0 anterior
        independent["sagittal"][k, :, :] = maps["sagittal"][k][::-1, ::-1].T
    reduce = np.mean if fusion == "mean" else np.max
    expected = reduce(np.stack(list(independent.values())), axis=0)
    settings = EvaluationSettings(brain_only=False, fusion=fusion)
    fused = finalise_volume(maps, image, None, settings).score
    assert np.abs(fused - expected).max() <= 1e-6
    for plane in PLANES:
        single = finalise_volume({plane: maps[plane]}, image, None, settings).score
        assert np.array_equal(single, independent[plane])


def test_planes_are_batched_apart_and_regrouped_per_volume(tmp_path: Path) -> None:
    _case(tmp_path / "brats", "BraTS-MET-00001-000")
    _case(tmp_path / "brats", "BraTS-MET-00002-000")
    dataset = _dataset(tmp_path / "brats", planes=list(PLANES))
    samples = dataset.samples
    sampler = VolumeBatchSampler(samples, batch_size=4, num_workers=2)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(samples)))
    for batch in batches:
        assert samples.iloc[batch][["image_path", "plane"]].drop_duplicates().shape[0] == 1
    buffer = SliceBuffer()
    buffer.expect(samples)
    completed = []
    for batch in batches:
        items = [dataset[i] for i in batch]
        collated = MedSliceBatch.collate(items)
        collated.anomaly_map = torch.stack([item.image[0] for item in items])
        completed += buffer.add(collated)
    assert sorted(completed) == sorted(set(samples.volume_id))
    volume = buffer.pop(completed[0])
    assert set(volume.by_plane()) == set(PLANES)
    assert len(volume) == (samples.volume_id == completed[0]).sum()


def test_training_stays_axial_by_default_and_describe_records_the_inputs(tmp_path: Path) -> None:
    for i in range(4):
        _case(tmp_path / "brats", f"BraTS-MET-0000{i}-000")
    datamodule = BraTS(tmp_path / "brats", num_workers=0, test_ratio=0.25, val_ratio=0.25, planes=["coronal"])
    datamodule.setup()
    assert set(datamodule.train_data.samples.plane) == {"axial"}
    assert set(datamodule.test_data.samples.plane) == {"coronal"}  # the planes asked for, in canonical order
    assert datamodule.describe()["planes"] == ["coronal"]
    assert "train_planes" not in datamodule.describe()
    assert "planes" not in BraTS(tmp_path / "brats").describe()
    assert isinstance(datamodule.train_dataloader().sampler, RandomSampler)  # anomalib's own loader, unchanged
    with pytest.raises(ValueError, match="planes=\\['axial', 'oblique'\\]"):
        BraTS(tmp_path / "brats", planes=["axial", "oblique"])
    with pytest.raises(ValueError, match="planes=\\['axial', 'oblique'\\]"):
        BraTS(tmp_path / "brats", train_planes=["axial", "oblique"])


def test_training_on_several_planes_serves_their_slices_and_masks(tmp_path: Path) -> None:
    for i in range(4):
        _case(tmp_path / "brats", f"BraTS-MET-0000{i}-000")
    datamodule = BraTS(
        tmp_path / "brats", num_workers=0, test_ratio=0.25, val_ratio=0.25, train_planes=["sagittal", "coronal"],
        train_batch_size=5,
    )  # fmt: skip
    datamodule.setup()
    train = datamodule.train_data
    truth = read_volume(next((tmp_path / "brats").glob("*/*-seg.nii.gz"))).data > 0  # canonical (X, Y, Z)
    n_volumes = train.samples.volume_id.nunique()
    assert n_volumes == 2
    assert train.samples.groupby("plane").size().to_dict() == {
        "coronal": n_volumes * truth.shape[1], "sagittal": n_volumes * truth.shape[0]
    }  # fmt: skip
    assert set(datamodule.test_data.samples.plane) == {"axial"}  # evaluation planes are their own option
    assert datamodule.describe()["train_planes"] == ["coronal", "sagittal"]
    # every case holds the same lesion; display orientation by hand: superior up, right (coronal) / anterior
    # (sagittal) on the left
    expected = {
        "coronal": lambda k: truth[:, k, :].T[::-1, ::-1],
        "sagittal": lambda k: truth[k, :, :].T[::-1, ::-1],
    }
    lesion_slices = {
        "coronal": set(np.flatnonzero(truth.any((0, 2)))),
        "sagittal": set(np.flatnonzero(truth.any((1, 2)))),
    }
    for index in range(len(train)):
        item = train[index]
        k = int(item.slice_index)
        assert item.image.shape[1:] == expected[item.plane](k).shape
        assert np.array_equal(item.gt_mask.numpy(), expected[item.plane](k))
        assert int(item.gt_label) == (k in lesion_slices[item.plane])
    loader = datamodule.train_dataloader()
    seen = []
    for batch in loader:
        assert len(set(batch.plane)) == 1  # one plane, one slice size per batch: resized once by the pre-processor
        assert batch.gt_mask.shape[1:] == expected[batch.plane[0]](0).shape
        seen += list(zip(batch.volume_id, batch.plane, batch.slice_index.tolist(), strict=True))
    assert len(seen) == len(train) == len(set(seen))  # every training slice once per epoch
    assert len(loader) == sum(-(-n // 5) for n in train.samples.groupby("plane").size())


@pytest.mark.parametrize("drop_last", [False, True])
def test_grouped_batch_sampler_shuffles_within_planes_and_splits_equally_under_ddp(drop_last: bool) -> None:
    planes = ["axial"] * 23 + ["coronal"] * 11 + ["sagittal"] * 7
    dataset = list(range(len(planes)))

    def batches(sampler: Sampler) -> list[list[int]]:
        batch_sampler = GroupedBatchSampler(sampler, 4, drop_last, groups=planes)
        drawn = list(batch_sampler)
        assert len(drawn) == len(batch_sampler)
        assert all(len({planes[i] for i in batch}) == 1 for batch in drawn)
        return drawn

    sizes = {"axial": 23, "coronal": 11, "sagittal": 7}
    kept = {plane: n - n % 4 if drop_last else n for plane, n in sizes.items()}  # drop_last: per plane
    torch.manual_seed(0)
    single = batches(RandomSampler(dataset))
    flat = [i for batch in single for i in batch]
    assert len(flat) == len(set(flat))  # each slice at most once
    assert pd.Series([planes[i] for i in flat]).value_counts().to_dict() == kept
    assert flat != sorted(flat)  # shuffled
    torch.manual_seed(0)
    assert batches(RandomSampler(dataset)) == single  # seeded by torch's generator (seed_everything)
    in_order = [i for b in batches(SequentialSampler(dataset)) for i in b]  # table order
    assert in_order == [i for i, plane in enumerate(planes) if i - planes.index(plane) < kept[plane]]
    shares = [batches(DistributedSampler(dataset, num_replicas=3, rank=r, seed=1)) for r in range(3)]
    assert len({len(share) for share in shares}) == 1  # every process runs the same number of steps
    shared = {i for share in shares for b in share for i in b}
    assert pd.Series([planes[i] for i in shared]).value_counts().to_dict() == kept  # all of them
    assert sum(len(share) for share in shares) - len(single) < 3  # padded with at most replicas - 1 batches
    epoch1 = DistributedSampler(dataset, num_replicas=3, rank=0, seed=1)
    epoch1.set_epoch(1)
    assert batches(epoch1) != shares[0]


def test_sequences_fill_the_channels_in_the_order_given(tmp_path: Path) -> None:
    # a marker in each sequence at the same voxel: it must appear in the channel of that sequence only
    case = _case(tmp_path / "brats", marker={"t2f": (3, 4, 2), "t1c": (9, 6, 6)})
    dataset = _dataset(tmp_path / "brats", channels="sequences", sequences=["t1c", "flair", "t2w"])
    assert dataset.samples.image_path.iloc[0].endswith("-t1c.nii.gz")  # the first sequence is the reference
    canonical = {m: read_volume(next(case.glob(f"*-{m}.nii.gz"))).data for m in ("t1c", "t2f", "t2w")}
    hits = {m: np.argwhere(v == 5.0) for m, v in canonical.items()}
    assert len(hits["t1c"]) == len(hits["t2f"]) == 1
    assert not len(hits["t2w"])
    for channel, modality in enumerate(("t1c", "t2f")):
        (x, y, z) = hits[modality][0]
        row = dataset.samples.index[(dataset.samples.slice_index == z) & (dataset.samples.plane == "axial")][0]
        image = dataset[row].image
        peak = image[channel].flatten().argmax()
        assert image[channel].flatten()[peak] == 1.0
        y_row, x_col = canonical[modality].shape[1] - 1 - y, canonical[modality].shape[0] - 1 - x  # served pixel
        assert divmod(int(peak), image.shape[-1]) == (y_row, x_col)
        others = [c for c in range(3) if c != channel]
        assert all(image[c, y_row, x_col] < 1.0 for c in others), (modality, channel)
    with pytest.raises(ValueError, match="three different modalities"):
        BraTS(tmp_path / "brats", channels="sequences", sequences=["t2f", "flair", "t2w"])
    with pytest.raises(ValueError, match="channels='sequences' needs three sequences"):
        BraTS(tmp_path / "brats", channels="sequences")


def test_adjacent_channels_hold_the_neighbour_slices_with_replicated_edges(tmp_path: Path) -> None:
    case = _case(tmp_path / "brats", marker={"t2w": (7, 6, 4)})
    volume = read_volume(next(case.glob("*-t2w.nii.gz"))).data
    (x, y, z) = np.argwhere(volume == 5.0)[0]
    dataset = _dataset(tmp_path / "brats", channels="adjacent", planes=["axial", "coronal"])
    samples = dataset.samples
    by = {(p, k): i for i, (p, k) in enumerate(zip(samples.plane, samples.slice_index, strict=True))}
    pixel = (volume.shape[1] - 1 - y, volume.shape[0] - 1 - x)  # the marker in the served axial image
    for k, channel in ((z + 1, 0), (z, 1), (z - 1, 2)):  # slice k shows slices k-1, k, k+1
        image = dataset[by["axial", k]].image
        assert image[channel][pixel] == 1.0
        assert all(image[c][pixel] < 1.0 for c in range(3) if c != channel)
    last = volume.shape[1] - 1
    edge = dataset[by["coronal", last]].image
    assert torch.equal(edge[1], edge[2])  # slice k+1 past the edge repeats slice k
    assert torch.equal(dataset[by["coronal", 0]].image[0], dataset[by["coronal", 0]].image[1])


def test_unlabelled_scans_serve_every_plane(tmp_path: Path) -> None:
    case = _case(tmp_path / "brats")
    datamodule = NiftiScans(next(case.glob("*-t2w.nii.gz")), num_workers=0, planes=list(PLANES), channels="adjacent")
    datamodule.setup()
    samples: pd.DataFrame = datamodule.test_data.samples
    shape = read_volume(next(case.glob("*-t2w.nii.gz"))).data.shape
    assert samples.groupby("plane").size().to_dict() == dict(zip(PLANES, shape[::-1], strict=True))
    assert datamodule.describe()["channels"] == "adjacent"
    with pytest.raises(ValueError, match="NiftiScans serves one file per volume"):
        NiftiScans(case, channels="sequences")


def test_lightning_rebuilds_the_grouped_batch_sampler_around_its_distributed_sampler() -> None:
    """What Lightning does to a train loader under DDP (private API): same class and planes, its sampler inside."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader

    planes = ["axial"] * 10 + ["coronal"] * 5
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = DataLoader(
            list(range(15)), batch_sampler=GroupedBatchSampler(RandomSampler(range(15)), 4, groups=planes)
        )
    shares = [
        _update_dataloader(loader, DistributedSampler(loader.dataset, num_replicas=2, rank=rank, seed=3)).batch_sampler
        for rank in (0, 1)
    ]
    assert all(isinstance(share, GroupedBatchSampler) and list(share.groups) == planes for share in shares)
    assert [len(share) for share in shares] == [3, 3]  # 3 + 2 batches, one repeated: 3 per process
    assert {i for share in shares for batch in share for i in batch} == set(range(15))
