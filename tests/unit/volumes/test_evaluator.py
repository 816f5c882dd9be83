# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""VolumeEvaluator fed slice batches directly: shuffled order, early finalisation, policies, outputs vs numpy."""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anomalib_medclip.data import DemoBraTS, MedSliceBatch
from anomalib_medclip.data.nifti import read_volume, slice_to_image
from anomalib_medclip.volumes import VolumeEvaluator

SHAPE = (14, 12, 6)  # source voxel order (the affine below permutes and flips the axes: not RAS)
AFFINE = np.array([[0.0, -1.0, 0, 20], [-1.5, 0, 0, 30], [0, 0, 2.0, -5], [0, 0, 0, 1]])


def _write_case(root: Path, name: str, lesion: bool, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1)[:, None, None, None] / 2
    brain = (((grid - centre) / (np.array(SHAPE)[:, None, None, None] / 2.2)) ** 2).sum(0) < 1
    image = np.where(brain, 0.3 + 0.1 * rng.random(SHAPE), 0.0).astype(np.float32)
    seg = np.zeros(SHAPE, np.uint8)
    if lesion:
        seg[4:8, 3:6, 2:4] = 2
    paths = root / f"{name}-t2w.nii.gz", root / f"{name}-seg.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), paths[0])
    nib.save(nib.Nifti1Image(seg, AFFINE), paths[1])
    return paths


def _slices(image: Path, seg: Path, kind: str, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Served anomaly maps per canonical slice: ``perfect`` (the ground truth), ``zero`` or ``random``."""
    truth = read_volume(seg).data > 0
    out = []
    for z in range(truth.shape[2]):
        served = slice_to_image(truth[:, :, z]).astype(np.float32)
        maps = {"perfect": 0.2 + 0.7 * served, "zero": np.zeros_like(served), "random": rng.random(served.shape)}
        out.append((z, maps[kind]))
    return out


def _batch(items: list[tuple[str, int, Path, Path, int, np.ndarray]]) -> MedSliceBatch:
    maps = torch.from_numpy(np.stack([m for *_, m in items])).float()
    return MedSliceBatch(
        image=torch.zeros(len(items), 3, *maps.shape[-2:]),
        anomaly_map=maps,
        pred_score=maps.flatten(1).amax(1),
        pred_mask=maps > 0.5,
        image_path=[str(i[2]) for i in items],
        mask_path=[str(i[3]) for i in items],
        volume_id=[i[0] for i in items],
        volume_index=torch.tensor([i[1] for i in items]),
        slice_index=torch.tensor([i[4] for i in items]),
    )


@pytest.fixture
def cases(tmp_path: Path) -> dict[str, tuple[Path, Path, str]]:
    plan = {
        "perfect": ("case_p", True),
        "zero": ("case_z", True),
        "random": ("case_r", True),
        "empty": ("case_e", False),
    }
    return {
        kind: (*_write_case(tmp_path, name, lesion, i), name) for i, (kind, (name, lesion)) in enumerate(plan.items())
    }


def _run(
    tmp_path: Path, cases: dict, evaluator: VolumeEvaluator, expected: bool = True, datamodule: object = None
) -> tuple[list, tuple]:
    """Feed all slices in a shuffled order; count volumes written vs complete after each batch."""
    rng = np.random.default_rng(5)
    items = []
    for index, (kind, (image, seg, name)) in enumerate(cases.items()):
        for z, slice_map in _slices(image, seg, "random" if kind == "empty" else kind, rng):
            items.append((name, index, image, seg, z, slice_map))
    order = rng.permutation(len(items))  # shuffled slice order, volumes interleaved
    samples = pd.DataFrame({"volume_id": [i[0] for i in items]})
    datamodule = datamodule or SimpleNamespace()
    datamodule.test_data = SimpleNamespace(samples=samples if expected else None)
    trainer = SimpleNamespace(
        default_root_dir=tmp_path / "run", datamodule=datamodule, is_global_zero=True, world_size=1
    )
    logged: list[tuple[str, float]] = []
    module = SimpleNamespace(log=lambda key, value, **_: logged.append((key, value)), hparams={})
    evaluator.on_test_start(trainer, module)
    written, complete, sent = [], [], set()
    for chunk in np.array_split(order, 6):
        evaluator.on_test_batch_end(trainer, module, None, _batch([items[i] for i in chunk]), 0)
        sent |= {items[i][0] + str(items[i][4]) for i in chunk}
        complete.append(sum(all(f"{c[2]}{z}" in sent for z in range(SHAPE[2])) for c in cases.values()))
        written.append(len(list((tmp_path / "run" / "volumes").glob("*_pred_mask.nii.gz"))))
    evaluator.on_test_epoch_end(trainer, module)
    return logged, (written, complete)


def _reference(pred: np.ndarray, seg: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    p, g = pred[brain], seg[brain]
    tp, fp, fn, tn = (p & g).sum(), (p & ~g).sum(), (~p & g).sum(), (~p & ~g).sum()
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if g.any() else math.nan,
        "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
        "specificity": tn / (tn + fp) if tn + fp else math.nan,
        "ppv": tp / (tp + fp) if tp + fp else math.nan,
    }


def test_outputs_match_numpy_on_shuffled_slices(tmp_path: Path, cases: dict) -> None:
    logged, (written, complete) = _run(tmp_path, cases, VolumeEvaluator())
    out = tmp_path / "run" / "volumes"
    assert written == complete, "each volume is written as soon as its last slice arrives"
    table = pd.read_csv(out / "metrics_per_volume.csv").set_index("volume_id")
    assert list(table.columns[:7]) == ["dice", "sensitivity", "specificity", "ppv", "lesion_voxels",
                                       "predicted_voxels", "dice_2d_mean"]  # fmt: skip
    all_scores, all_truth = [], []
    for image, seg, name in cases.values():
        source = nib.load(image)
        for kind in ("anomaly_map", "pred_mask"):
            written = nib.load(out / f"{name}_{kind}.nii.gz")
            assert written.shape == source.shape
            assert np.allclose(written.affine, source.affine)
        pred = np.asanyarray(nib.load(out / f"{name}_pred_mask.nii.gz").dataobj) > 0
        score = np.asanyarray(nib.load(out / f"{name}_anomaly_map.nii.gz").dataobj)
        truth, brain = np.asanyarray(nib.load(seg).dataobj) > 0, np.asanyarray(source.dataobj) > 0
        assert np.array_equal(pred, (score > 0.5) & brain)
        for key, value in _reference(pred, truth, brain).items():
            assert table.loc[name, key] == pytest.approx(value, nan_ok=True), (name, key)
        assert table.loc[name, "lesion_voxels"] == (truth & brain).sum()
        all_scores.append(score[brain])
        all_truth.append(truth[brain])
    assert table.loc["case_p", "dice"] == 1.0
    assert table.loc["case_z", ["dice", "sensitivity"]].tolist() == [0.0, 0.0]
    assert math.isnan(table.loc["case_e", "dice"])
    assert not math.isnan(table.loc["case_e", "specificity"])
    summary = json.loads((out / "summary.json").read_text())
    expected_auroc = roc_auc_score(np.concatenate(all_truth), np.concatenate(all_scores))
    assert summary["voxel_auroc"] == pytest.approx(expected_auroc, abs=2e-3)
    assert summary["volume_dice"]["mean"] == pytest.approx(table.dice.mean())
    assert summary["volume_dice"]["n"] == 3
    assert summary["threshold_policy"] == "adaptive"
    assert summary["threshold"] == 0.5
    assert summary["settings"] == VolumeEvaluator().settings
    assert "hd95" not in summary
    assert dict(logged)["volume3d_dice"] == pytest.approx(table.dice.mean())
    assert {p.name for p in out.glob("*.png")} == {
        "dice_2d_vs_3d.png",
        "dice_vs_distance.png",
        "lesion_size_vs_dice.png",
    }
    assert not list(out.glob(".*")), "no temporary files left"


def test_without_expected_counts_volumes_finalise_at_epoch_end(tmp_path: Path, cases: dict) -> None:
    _, (written, _) = _run(tmp_path, cases, VolumeEvaluator(), expected=False)
    assert not any(written)
    assert len(pd.read_csv(tmp_path / "run" / "volumes" / "metrics_per_volume.csv")) == 4


@pytest.mark.parametrize(("policy", "threshold"), [("fixed", 0.25), ("oracle", None)])
def test_threshold_policies_are_applied_and_reported(
    tmp_path: Path, cases: dict, policy: str, threshold: float | None
) -> None:
    _run(tmp_path, cases, VolumeEvaluator(threshold_policy=policy, threshold=threshold or 0.5))
    out = tmp_path / "run" / "volumes"
    table = pd.read_csv(out / "metrics_per_volume.csv").set_index("volume_id")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold_policy"] == policy
    for image, seg, name in cases.values():
        score = np.asanyarray(nib.load(out / f"{name}_anomaly_map.nii.gz").dataobj)
        pred = np.asanyarray(nib.load(out / f"{name}_pred_mask.nii.gz").dataobj) > 0
        brain, truth = np.asanyarray(nib.load(image).dataobj) > 0, np.asanyarray(nib.load(seg).dataobj) > 0
        assert np.array_equal(pred, (score > table.loc[name, "threshold"]) & brain)
        if policy == "oracle" and truth.any():  # no threshold on the 0.01 grid does better
            for t in np.linspace(0, 1, 101):
                p = (score > t) & brain
                assert table.loc[name, "dice"] >= 2 * (p & truth).sum() / (p.sum() + (truth & brain).sum()) - 1e-6
    if policy == "fixed":
        assert (table.threshold == 0.25).all()
        assert summary["threshold"] == 0.25
    else:
        assert "oracle" in summary["threshold"]
        assert table.loc["case_p", "dice"] == 1.0


def test_invalid_policy() -> None:
    with pytest.raises(ValueError, match="threshold_policy='best'"):
        VolumeEvaluator(threshold_policy="best")  # type: ignore[arg-type]


CHOICES = {
    "threshold_policy": "fixed",
    "threshold": 0.3,
    "brain_only": False,
    "smoothing_sigma": 1.5,
    "min_component_voxels": 4,
    "curve_thresholds": 10,
    "hd95": True,
    "brats_official": False,
    "brain_erosion": 2,
    "median_kernel": 3,
    "postprocess": "none",
    "fusion": "max",
}


def test_settings_are_exactly_the_constructor_arguments() -> None:
    parameters = inspect.signature(VolumeEvaluator).parameters
    assert VolumeEvaluator().settings == {name: p.default for name, p in parameters.items()}
    evaluator = VolumeEvaluator(**CHOICES)
    assert evaluator.settings == CHOICES
    assert list(evaluator.settings) == list(parameters)
    assert json.loads(json.dumps(evaluator.settings)) == evaluator.settings
    assert VolumeEvaluator(**evaluator.settings).settings == evaluator.settings


def test_configure_replaces_some_settings_in_place_and_they_apply(tmp_path: Path, cases: dict) -> None:
    evaluator = VolumeEvaluator(hd95=True)
    evaluator.configure(threshold_policy="fixed", threshold=0.25)
    expected = {**VolumeEvaluator().settings, "hd95": True, "threshold_policy": "fixed", "threshold": 0.25}
    assert evaluator.settings == expected
    _run(tmp_path, cases, evaluator)
    out = tmp_path / "run" / "volumes"
    table = pd.read_csv(out / "metrics_per_volume.csv")
    assert (table.threshold == 0.25).all()
    assert "hd95" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == expected
    assert summary["hd95"].startswith("MONAI compute_hausdorff_distance, percentile 95, max of the two directed")
    evaluator.configure(**CHOICES)
    assert evaluator.settings == CHOICES


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("threshold_policy", "best"),
        ("threshold", 1.5),
        ("threshold", "0.5"),
        ("smoothing_sigma", -1.0),
        ("min_component_voxels", 2.5),
        ("min_component_voxels", -1),
        ("curve_thresholds", 1),
        ("brain_only", 1),
        ("hd95", "yes"),
        ("brats_official", None),
    ],
)
def test_invalid_settings_are_refused_by_name(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{option}={value!r}")):
        VolumeEvaluator(**{option: value})
    evaluator = VolumeEvaluator(hd95=True)
    with pytest.raises(ValueError, match=re.escape(f"{option}={value!r}")):
        evaluator.configure(**{"min_component_voxels": 2, option: value})  # a valid change is not applied either
    assert evaluator.settings == VolumeEvaluator(hd95=True).settings  # nothing changed


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Unknown VolumeEvaluator option\(s\) \['thresold'\]"):
        VolumeEvaluator().configure(thresold=0.3)


def test_summary_describes_the_datamodule(tmp_path: Path, cases: dict) -> None:
    """``data`` comes from the datamodule's own describe(): what defines the data and split, root made absolute."""
    datamodule = DemoBraTS(root=tmp_path / "demo", modality="flair", seed=3, test_ratio=0.4, n_subjects=5)
    _run(tmp_path, cases, VolumeEvaluator(), datamodule=datamodule)
    summary = json.loads((tmp_path / "run" / "volumes" / "summary.json").read_text())
    assert summary["data"]["class"] == "DemoBraTS"
    assert summary["data"]["root"] == str((tmp_path / "demo").resolve())
    assert summary["data"]["modality"] == "t2f"
    assert summary["data"]["seed"] == 3
    assert summary["data"]["ratios"] == {"test": 0.4, "val": 0.1, "train": pytest.approx(0.5)}
    assert (summary["data"]["n_subjects"], summary["data"]["generation_seed"]) == (5, 0)  # DemoBraTS: how generated
    assert summary["model"] == {"class": "SimpleNamespace", "note": "describes no settings (no describe() method)"}


def test_batches_without_volume_id_are_ignored(tmp_path: Path) -> None:
    from anomalib.data import ImageBatch

    evaluator = VolumeEvaluator()
    trainer = SimpleNamespace(default_root_dir=tmp_path, datamodule=None, is_global_zero=True, world_size=1)
    evaluator.on_test_start(trainer, None)
    batch = ImageBatch(image=torch.rand(2, 3, 8, 8), anomaly_map=torch.rand(2, 8, 8))
    evaluator.on_test_batch_end(trainer, None, None, batch, 0)
    evaluator.on_test_epoch_end(trainer, SimpleNamespace(log=pytest.fail))
    assert not (tmp_path / "volumes").exists()


def test_optional_hd95_column(tmp_path: Path, cases: dict) -> None:
    _run(tmp_path, cases, VolumeEvaluator(hd95=True))
    table = pd.read_csv(tmp_path / "run" / "volumes" / "metrics_per_volume.csv").set_index("volume_id")
    assert table.loc["case_p", "hd95"] == 0.0
    assert table.loc[["case_z", "case_e"], "hd95"].isna().all()  # empty prediction / empty ground truth
    assert table.loc["case_r", "hd95"] > 0


def test_a_repeated_slice_of_a_finished_volume_is_ignored(tmp_path: Path, cases: dict) -> None:
    """Lightning's DistributedSampler repeats slices to even out processes: a late repeat must not re-open a volume."""
    image, seg, name = cases["perfect"]
    items = [(name, 0, image, seg, z, m) for z, m in _slices(image, seg, "perfect", np.random.default_rng(0))]
    samples = pd.DataFrame({"volume_id": [name] * len(items)})
    trainer = SimpleNamespace(
        default_root_dir=tmp_path, datamodule=SimpleNamespace(test_data=SimpleNamespace(samples=samples)),
        is_global_zero=True, world_size=1,
    )  # fmt: skip
    module = SimpleNamespace(log=lambda *_, **__: None, hparams={})
    evaluator = VolumeEvaluator()
    evaluator.on_test_start(trainer, module)
    evaluator.on_test_batch_end(trainer, module, None, _batch(items), 0)
    written = (tmp_path / "volumes" / f"{name}_anomaly_map.nii.gz").stat().st_mtime_ns
    evaluator.on_test_batch_end(trainer, module, None, _batch(items[:1]), 1)
    evaluator.on_test_epoch_end(trainer, module)
    assert len(pd.read_csv(tmp_path / "volumes" / "metrics_per_volume.csv")) == 1
    assert (tmp_path / "volumes" / f"{name}_anomaly_map.nii.gz").stat().st_mtime_ns == written


def test_two_runs_into_one_results_folder_never_mix(tmp_path: Path, cases: dict) -> None:
    """Bad input #10: a second run into the same results folder gets its own folder; each summary lists its volumes."""
    first = {k: cases[k] for k in ("perfect", "zero")}
    second = {k: cases[k] for k in ("random", "empty")}
    _run(tmp_path, first, VolumeEvaluator())
    _run(tmp_path, second, VolumeEvaluator())
    for folder, run in (("volumes", first), ("volumes_v1", second)):
        out = tmp_path / "run" / folder
        names = sorted(name for *_, name in run.values())
        assert sorted(p.name.removesuffix("_pred_mask.nii.gz") for p in out.glob("*_pred_mask.nii.gz")) == names
        summary = json.loads((out / "summary.json").read_text())
        assert summary["volume_ids"] == names
        assert summary["volumes"] == len(names)
        assert sorted(pd.read_csv(out / "metrics_per_volume.csv").volume_id) == names


def test_undefined_metrics_say_why(tmp_path: Path, cases: dict, caplog: pytest.LogCaptureFixture) -> None:
    """Bad input #5: an all-zero scan with a lesion is warned about; no row of NaN without a reason."""
    image, seg = _write_case(tmp_path, "case_black", lesion=True, seed=9)
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), AFFINE), image)
    plan = {"perfect": cases["perfect"], "empty": cases["empty"], "zero": (image, seg, "case_black")}
    with caplog.at_level("WARNING"):
        _run(tmp_path, plan, VolumeEvaluator())
    table = pd.read_csv(tmp_path / "run" / "volumes" / "metrics_per_volume.csv").set_index("volume_id")
    assert table.loc["case_black", "note"].startswith("no counted voxels (the scan is all 0")
    assert math.isnan(table.loc["case_black", "dice"])
    assert "Volume case_black: no counted voxels" in caplog.text
    assert table.loc["case_e", "note"].startswith("no lesion (empty ground truth)")
    assert pd.isna(table.loc["case_p", "note"])  # every metric defined: no note
    for row in table.itertuples():  # a NaN anywhere comes with a reason
        if any(math.isnan(getattr(row, s)) for s in ("dice", "sensitivity", "specificity", "ppv")):
            assert isinstance(row.note, str)
            assert row.note
