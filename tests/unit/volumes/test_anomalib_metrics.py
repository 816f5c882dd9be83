# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""volume_metrics() (anomalib metrics from per-slice counts) against numpy; optional BraTS-evaluation hook."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from anomalib.data import ImageBatch

from anomalib_medclip.data import MedSliceBatch
from anomalib_medclip.volumes import volume_metrics
from anomalib_medclip.volumes.brats_official import write_brats_lesionwise


def _volumes(rng: np.random.Generator) -> dict[int, dict[str, np.ndarray]]:
    """Three volumes of 5 slices (8x8): random, empty ground truth, all-zero prediction; brain = a random blob."""
    brain = rng.random((5, 8, 8)) > 0.3
    volumes = {}
    for index, kind in enumerate(("random", "empty", "zero")):
        gt = rng.random(brain.shape) > 0.7 if kind != "empty" else np.zeros(brain.shape, bool)
        pred = rng.random(brain.shape) > 0.6 if kind != "zero" else np.zeros(brain.shape, bool)
        volumes[index] = {"gt": gt, "pred": pred, "brain": brain}
    return volumes


def _reference(volumes: dict, brain_only: bool, ignore_empty: bool) -> dict[str, float]:
    per_volume: dict[str, list[float]] = {"dice": [], "sensitivity": [], "specificity": [], "ppv": []}
    for volume in volumes.values():
        keep = volume["brain"] if brain_only else np.ones_like(volume["brain"])
        p, g = volume["pred"][keep], volume["gt"][keep]
        tp, fp, fn, tn = (p & g).sum(), (p & ~g).sum(), (~p & g).sum(), (~p & ~g).sum()
        empty_dice = math.nan if ignore_empty else float(not p.any())
        per_volume["dice"].append(2 * tp / (2 * tp + fp + fn) if g.any() else empty_dice)
        per_volume["sensitivity"].append(tp / (tp + fn) if tp + fn else math.nan)
        per_volume["specificity"].append(tn / (tn + fp) if tn + fp else math.nan)
        per_volume["ppv"].append(tp / (tp + fp) if tp + fp else math.nan)
    return {key: float(np.nanmean(values)) for key, values in per_volume.items()}


def _batches(volumes: dict, rng: np.random.Generator) -> list[MedSliceBatch]:
    rows = [(v, z) for v in volumes for z in range(5)]
    rows = [rows[i] for i in rng.permutation(len(rows))]  # shuffled slices, volumes interleaved
    batches = []
    for chunk in np.array_split(np.arange(len(rows)), 4):
        picked = [rows[i] for i in chunk]
        brain = np.stack([volumes[v]["brain"][z] for v, z in picked])
        native = torch.tensor(np.kron(brain, np.ones((1, 2, 2), bool)))  # served at twice the model's size
        batches.append(
            MedSliceBatch(
                image=torch.rand(len(picked), 3, 8, 8),  # the image no longer says which pixels are brain
                brain_mask=native,
                gt_mask=torch.tensor(np.stack([volumes[v]["gt"][z] for v, z in picked])),
                pred_mask=torch.tensor(np.stack([volumes[v]["pred"][z] for v, z in picked])),
                anomaly_map=torch.rand(len(picked), 8, 8),
                volume_id=[f"v{v}" for v, _ in picked],
                volume_index=torch.tensor([v for v, _ in picked]),
                slice_index=torch.tensor([z for _, z in picked]),
            )
        )
    return batches


@pytest.mark.parametrize(("brain_only", "ignore_empty"), [(True, True), (False, True), (True, False)])
def test_volume_metrics_match_numpy(brain_only: bool, ignore_empty: bool) -> None:
    rng = np.random.default_rng(0)
    volumes = _volumes(rng)
    metrics = volume_metrics(brain_only=brain_only, ignore_empty=ignore_empty)
    assert [m.name for m in metrics] == ["volume_Dice", "volume_Sensitivity", "volume_Specificity", "volume_PPV"]
    for batch in _batches(volumes, rng):
        for metric in metrics:
            metric.update(batch)
    expected = _reference(volumes, brain_only, ignore_empty)
    for metric, key in zip(metrics, ("dice", "sensitivity", "specificity", "ppv"), strict=True):
        assert float(metric.compute()) == pytest.approx(expected[key], rel=1e-6), key


def test_non_volumetric_batches_are_skipped() -> None:
    (dice, *_) = volume_metrics()
    batch = ImageBatch(image=torch.rand(2, 3, 8, 8), gt_mask=torch.ones(2, 8, 8, dtype=torch.bool))
    dice.update(batch.update(pred_mask=torch.ones(2, 8, 8, dtype=torch.bool)))
    assert dice.compute() is None


def test_invalid_statistic() -> None:
    from anomalib_medclip.volumes import VolumeStat

    with pytest.raises(ValueError, match="statistic='iou'"):
        VolumeStat("iou")  # type: ignore[arg-type]


def test_brats_lesionwise_is_skipped_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "brats_evaluation", None)  # import fails as if not installed
    assert write_brats_lesionwise(tmp_path, [("case", "seg.nii.gz")]) is None
    assert not list(tmp_path.iterdir())


def test_brats_lesionwise_table_with_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def evaluate(prediction: str, reference: str, subject: str, evaluator: object) -> dict:
        """The shape of BraTS-evaluation's result for the mets config: one dict per region (et, rc, tc, wt)."""
        calls.append((prediction, reference, subject, evaluator))
        if subject == "case_b":
            return {"subject_name": subject, "error": "cannot read"}
        regions = {name: {"global_bin_dsc": dsc, "tp": 1} for name, dsc in (("et", 0.1), ("rc", 0.0), ("tc", 0.2))}
        return {**regions, "wt": {"global_bin_dsc": 0.5, "tp": 1}, "subject_name": subject}

    fake = SimpleNamespace(config_path=lambda name: f"/configs/{name}.yaml", evaluate_single_exam=evaluate)
    evaluator = SimpleNamespace(load_from_config=lambda path: f"evaluator({path})")
    monkeypatch.setitem(sys.modules, "brats_evaluation", fake)
    monkeypatch.setitem(sys.modules, "panoptica", SimpleNamespace(Panoptica_Evaluator=evaluator))
    path = write_brats_lesionwise(tmp_path, [("case_a", "/data/a-seg.nii.gz"), ("case_b", "/data/b-seg.nii.gz")])
    assert calls[0] == (
        str(tmp_path / "case_a_pred_mask.nii.gz"), "/data/a-seg.nii.gz", "case_a", "evaluator(/configs/mets.yaml)"
    )  # fmt: skip
    table = pd.read_csv(path)
    assert table.region.dropna().tolist() == ["wt"]  # et/tc/rc of a binary prediction are meaningless: left out
    assert table.iloc[0][["volume_id", "global_bin_dsc", "tp"]].tolist() == ["case_a", 0.5, 1]
    assert table.iloc[1][["volume_id", "error"]].tolist() == ["case_b", "cannot read"]
