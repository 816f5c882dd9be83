# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""SliceVisualizer: files named per volume and slice, per-volume quotas, de-normalised images."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import Compose, Normalize

from anomalib_medclip.data import MedSliceBatch
from anomalib_medclip.visualization import SliceVisualizer

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _batch(volume: str, slices: list[int], labels: list[int], raw: torch.Tensor) -> MedSliceBatch:
    n = len(slices)
    normalised = (raw - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return MedSliceBatch(
        image=normalised,
        gt_label=torch.tensor(labels),
        gt_mask=torch.zeros(n, 16, 16, dtype=torch.bool),
        anomaly_map=torch.rand(n, 16, 16),
        pred_mask=torch.zeros(n, 16, 16, dtype=torch.bool),
        pred_score=torch.rand(n),
        pred_label=torch.tensor(labels).bool(),
        volume_id=[volume] * n,
        volume_index=torch.zeros(n, dtype=torch.long),
        slice_index=torch.tensor(slices),
    )


@pytest.fixture
def module() -> SimpleNamespace:
    return SimpleNamespace(pre_processor=SimpleNamespace(transform=Compose([Normalize(mean=MEAN, std=STD)])))


def test_quota_lesions_first_normals_capped(tmp_path: Path, module: SimpleNamespace) -> None:
    visualizer = SliceVisualizer(max_slices_per_volume=4, fields=["image"], overlay_fields=[])
    trainer = SimpleNamespace(default_root_dir=tmp_path, world_size=1)
    raw = torch.rand(6, 3, 16, 16)
    visualizer.on_test_start(trainer, module)
    visualizer.on_test_batch_end(
        trainer, module, None, _batch("case_a", [0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 1, 1], raw), 0
    )
    visualizer.on_test_batch_end(trainer, module, None, _batch("case_b", [7, 8], [1, 0], raw[:2]), 1)
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    # case_a: one normal slice (quota 4 // 4), then lesion slices until 4 files; case_b: both
    assert names == ["case_a_z000.png", "case_a_z002.png", "case_a_z003.png", "case_a_z004.png",
                     "case_b_z007.png", "case_b_z008.png"]  # fmt: skip


def test_image_is_denormalised_with_model_statistics(
    tmp_path: Path, module: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def capture(item: object, **kwargs: object) -> Image.Image:
        seen.append(item)
        return Image.new("RGB", (4, 4))

    monkeypatch.setattr("anomalib_medclip.visualization.slices.visualize_image_item", capture)
    raw = torch.rand(1, 3, 16, 16)
    SliceVisualizer().on_test_batch_end(
        SimpleNamespace(default_root_dir=tmp_path), module, None, _batch("c", [3], [1], raw), 0
    )
    assert torch.allclose(seen[0].image, raw[0], atol=1e-6)
    assert seen[0].image_path is None
    assert (tmp_path / "images" / "c_z003.png").is_file()


def test_invalid_quota() -> None:
    with pytest.raises(ValueError, match="max_slices_per_volume=0"):
        SliceVisualizer(max_slices_per_volume=0)


def test_planned_quota_does_not_depend_on_which_process_serves_a_slice(tmp_path: Path, module: SimpleNamespace) -> None:
    """Two 'ranks' serving halves of a volume in any order render exactly the slices one process renders."""
    import pandas as pd

    labels = [0, 0, 1, 1, 1, 1]
    samples = pd.DataFrame({"volume_id": "case_a", "slice_index": range(6), "label_index": labels})
    raw = torch.rand(6, 3, 16, 16)
    for rank, served in enumerate(([5, 3, 1], [4, 2, 0])):
        trainer = SimpleNamespace(
            default_root_dir=tmp_path,
            world_size=1,
            datamodule=SimpleNamespace(test_data=SimpleNamespace(samples=samples)),
        )
        visualizer = SliceVisualizer(max_slices_per_volume=4, fields=["image"], overlay_fields=[])
        visualizer.on_test_start(trainer, module)
        batch = _batch("case_a", served, [labels[z] for z in served], raw[served])
        visualizer.on_test_batch_end(trainer, module, None, batch, rank)
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == ["case_a_z000.png", "case_a_z002.png", "case_a_z003.png", "case_a_z004.png"]
