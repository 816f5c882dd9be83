# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""End to end through anomalib's Engine: BraTS tree -> slices -> PostProcessor -> VolumeEvaluator/metrics/visualiser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from anomalib import LearningType
from anomalib.data import InferenceBatch
from anomalib.engine import Engine
from anomalib.metrics import Evaluator
from anomalib.models import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from torch import nn
from torchvision.transforms.v2 import Compose, Normalize, Resize

from anomalib_medclip.data import BraTS, NiftiScans
from anomalib_medclip.data.brats import split_subjects
from anomalib_medclip.visualization import SliceVisualizer
from anomalib_medclip.volumes import VolumeEvaluator, volume_metrics

MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
SHAPE = (18, 16, 8)
NON_RAS = np.array([[0.0, -1.2, 0, 10], [-1.0, 0, 0, 12], [0, 0, 1.5, 0], [0, 0, 0, 1]])


class _Intensity(nn.Module):
    def forward(self, image: torch.Tensor) -> InferenceBatch:
        maps = image[:, 0]
        return InferenceBatch(pred_score=maps.flatten(1).amax(1), anomaly_map=maps)


class IntensityModel(AnomalibModule):
    """Zero-shot stand-in: the anomaly map is the (normalised) image intensity."""

    def __init__(self) -> None:
        transform = Compose([Resize((12, 12), antialias=True), Normalize(mean=MEAN, std=STD)])
        super().__init__(pre_processor=PreProcessor(transform=transform))
        self.model = _Intensity()

    def validation_step(self, batch: Any, *args: Any) -> Any:
        del args
        return batch.update(**self.model(batch.image)._asdict())

    def training_step(self, batch: Any, *args: Any) -> None:
        del batch, args

    def configure_optimizers(self) -> None:
        return None

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ZERO_SHOT

    def describe(self) -> dict[str, Any]:
        return {"learning_type": self.learning_type}

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        return PostProcessor()

    @staticmethod
    def configure_evaluator() -> Evaluator:
        return Evaluator(test_metrics=volume_metrics())

    @classmethod
    def configure_visualizer(cls) -> SliceVisualizer:
        return SliceVisualizer(max_slices_per_volume=2)

    def configure_callbacks(self) -> list[Any]:
        return [*super().configure_callbacks(), VolumeEvaluator()]


def _tree(root: Path) -> dict[str, str]:
    """Four BraTS-MET cases; the test split gets one non-RAS lesion case and one lesion-free case."""
    subjects = [f"BraTS-MET-0000{i}" for i in range(4)]
    split = split_subjects(subjects, 0.5, 0.5, 0)
    test = sorted(s for s in subjects if split[s] == "test")
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE)[:, None, None, None] - 1) / 2
    brain = (((grid - centre) / (np.array(SHAPE)[:, None, None, None] / 2.2)) ** 2).sum(0) < 1
    for subject in subjects:
        case = root / f"{subject}-000"
        case.mkdir(parents=True)
        image = np.where(brain, 0.4 + 0.2 * grid[0] / SHAPE[0], 0.0).astype(np.float32)
        seg = np.zeros(SHAPE, np.uint8)
        if subject != test[1]:
            seg[6:10, 5:9, 3:6] = 3
            image[seg > 0] = 1.0
        affine = NON_RAS if subject == test[0] else np.diag([1.0, 1.0, 1.0, 1.0])
        nib.save(nib.Nifti1Image(image, affine), case / f"{subject}-000-t2w.nii.gz")
        nib.save(nib.Nifti1Image(seg, affine), case / f"{subject}-000-seg.nii.gz")
    return {"lesion": f"{test[0]}-000", "empty": f"{test[1]}-000"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, list, IntensityModel]:
    tmp = tmp_path_factory.mktemp("engine")
    names = _tree(tmp / "brats")
    datamodule = BraTS(tmp / "brats", eval_batch_size=5, num_workers=0, test_ratio=0.5, val_ratio=0.5)
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=tmp / "results", logger=False)
    model = IntensityModel()
    results = engine.test(model, datamodule=datamodule)
    (out,) = (tmp / "results").rglob("volumes")
    engine.trainer.save_checkpoint(tmp / "model.ckpt")
    return tmp, out, names, results, model


def test_volume_outputs_overlay_the_source_and_match_the_table(run: tuple) -> None:
    tmp, out, names, *_ = run
    table = pd.read_csv(out / "metrics_per_volume.csv").set_index("volume_id")
    assert set(table.index) == set(names.values())
    for name in names.values():
        scan = nib.load(tmp / "brats" / name / f"{name}-t2w.nii.gz")
        for kind in ("anomaly_map", "pred_mask"):
            written = nib.load(out / f"{name}_{kind}.nii.gz")
            assert written.shape == scan.shape
            assert np.allclose(written.affine, scan.affine)
        assert nib.load(out / f"{name}_pred_mask.nii.gz").get_data_dtype() == np.uint8
        assert nib.load(out / f"{name}_anomaly_map.nii.gz").get_data_dtype() == np.float32
        pred = np.asanyarray(nib.load(out / f"{name}_pred_mask.nii.gz").dataobj) > 0
        seg = np.asanyarray(nib.load(tmp / "brats" / name / f"{name}-seg.nii.gz").dataobj) > 0
        brain = np.asanyarray(scan.dataobj) > 0
        p, g = pred & brain, seg & brain
        dice = 2 * (p & g).sum() / (p.sum() + g.sum()) if g.any() else float("nan")
        assert dice == pytest.approx(table.loc[name, "dice"], abs=1e-6, nan_ok=True)
    assert 0 < table.loc[names["lesion"], "dice"] <= 1
    assert np.isnan(table.loc[names["empty"], "dice"])


def test_summary_results_and_slice_images(run: tuple) -> None:
    _, out, names, results, _ = run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["class"] == "IntensityModel"
    assert summary["data"]["class"] == "BraTS"
    assert summary["model"]["learning_type"] == "zero_shot"  # the protocol behind the numbers
    assert summary["data"]["ratios"] == {"test": 0.5, "val": 0.5, "train": 0.0}
    assert summary["data"]["seed"] == 0
    assert summary["data"]["modality"] == "t2w"
    assert Path(summary["data"]["root"]).is_absolute()
    assert summary["settings"] == VolumeEvaluator().settings
    assert summary["voxels_counted"].startswith("inside the brain")
    logged = results[0]
    assert logged["voxel_auroc"] == pytest.approx(summary["voxel_auroc"])
    assert logged["volume3d_dice"] == pytest.approx(summary["volume_dice"]["mean"])
    assert {"volume_Dice", "volume_Sensitivity", "volume_Specificity", "volume_PPV"} <= logged.keys()
    images = sorted(p.name for p in (out.parent / "images").glob("*.png"))
    per_volume = {key: [p for p in images if p.startswith(name)] for key, name in names.items()}
    assert len(per_volume["empty"]) == 1  # quota 2, at most a quarter (min. 1) of it normal slices
    assert len(per_volume["lesion"]) == 2
    assert any(p.endswith(("z003.png", "z004.png", "z005.png")) for p in per_volume["lesion"])


def test_predict_on_an_unlabelled_scan(run: tuple) -> None:
    tmp, _, names, _, model = run
    scan = tmp / "brats" / names["lesion"] / f"{names['lesion']}-t2w.nii.gz"
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=tmp / "predict", logger=False)
    datamodule = NiftiScans(scan, eval_batch_size=4, num_workers=0)
    engine.predict(model, datamodule=datamodule, ckpt_path=tmp / "model.ckpt")  # thresholds learnt at validation
    (report_path,) = (tmp / "predict").rglob(f"volumes/{names['lesion']}-t2w.json")
    report = json.loads(report_path.read_text())
    pred = np.asanyarray(nib.load(report_path.parent / f"{names['lesion']}-t2w_pred_mask.nii.gz").dataobj) > 0
    assert pred.shape == nib.load(scan).shape
    assert report["anomalous_volume_ml"] == pytest.approx(pred.sum() * 1.2 * 1.0 * 1.5 / 1000)
    assert report["slices_flagged"], "the bright lesion is flagged"
    assert 0 <= report["max_slice_score"] <= 1
