# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The datamodules' describe(): what summary.json reports as "data" (no attribute scraping)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anomalib_medclip.data import BraTS, MedBMAD, NiftiScans
from anomalib_medclip.utils import Describable, describe


def test_brats_describes_data_and_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    datamodule = BraTS("brats", modality="flair", test_ratio=0.2, val_ratio=0.2, slices="z_range",
                       eval_slices="brain", z_range=(10, 20), seed=7)  # fmt: skip
    assert isinstance(datamodule, Describable)
    assert describe(datamodule) == {
        "class": "BraTS",
        "root": str(tmp_path / "brats"),
        "modality": "t2f",
        "ratios": {"test": 0.2, "val": 0.2, "train": pytest.approx(0.6)},
        "seed": 7,
        "slices": "z_range",
        "eval_slices": "brain",
        "z_range": [10, 20],
        "on_error": "raise",
    }


def test_bmad_describes_the_protocol(tmp_path: Path) -> None:
    few_shot = describe(MedBMAD(tmp_path / "bmad", category="Liver", shots=4, fewshot_iteration=2))
    assert few_shot == {
        "class": "MedBMAD",
        "root": str(tmp_path / "bmad"),
        "category": "Liver",
        "shots": 4,
        "fewshot_list": str(tmp_path / "bmad" / "fewshot_seed" / "Liver" / "4-shot.txt"),
        "fewshot_iteration": 2,
        "leave_one_out": False,
        "object_name": "Liver",
    }
    zero_shot = describe(MedBMAD(tmp_path / "bmad", category="Retina_RESC", leave_one_out=True))
    assert (zero_shot["leave_one_out"], zero_shot["shots"], zero_shot["fewshot_list"]) == (True, None, None)
    assert zero_shot["object_name"] == "retinal OCT"
    json.dumps(zero_shot)


def test_nifti_scans_describe_the_scans(tmp_path: Path) -> None:
    assert describe(NiftiScans(tmp_path / "scans", modality="t1ce", object_name="head MRI")) == {
        "class": "NiftiScans",
        "path": str(tmp_path / "scans"),
        "modality": "t1c",
        "object_name": "head MRI",
    }
