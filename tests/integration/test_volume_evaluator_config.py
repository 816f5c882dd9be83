# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The 3D evaluation is configured like any model component: stock CLI flags, a YAML config, a grid ``--set``.

``summary.json`` and ``metrics_per_volume.csv`` must show what was asked (``threshold_policy: oracle``, an HD95
column and its definition), and a checkpoint carries the choice made at training unless the test run overrides it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from anomalib_medclip.experiments.cli import main

ANOMALIB = shutil.which("anomalib") or str(Path(sys.executable).parent / "anomalib")
TINY = {"backbone": "ViT-tiny-test", "pretrained": None, "image_size": 32}
ORACLE_HD95 = ["--model.volume_evaluator.threshold_policy", "oracle", "--model.volume_evaluator.hd95", "true"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _reports(root: Path) -> tuple[dict, pd.DataFrame]:
    (summary,) = root.rglob("volumes/summary.json")
    return json.loads(summary.read_text()), pd.read_csv(summary.parent / "metrics_per_volume.csv")


def _assert_oracle_with_hd95(summary: dict, table: pd.DataFrame) -> None:
    assert summary["threshold_policy"] == "oracle"
    assert summary["settings"]["threshold_policy"] == "oracle"
    assert summary["settings"]["hd95"] is True
    assert "MONAI" in summary["hd95"]
    assert "hd95" in table.columns
    assert len(table) >= 1
    assert all(math.isfinite(v) or math.isnan(v) for v in table["hd95"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A VanillaCLIP run on 3 DemoBraTS subjects, trained with ``hd95`` on and the ``fixed`` policy at 0.4."""
    tmp = tmp_path_factory.mktemp("volume_cli")
    args = [
        "--model", "VanillaCLIP", *(f"--model.{k}={'null' if v is None else v}" for k, v in TINY.items()),
        "--data", "DemoBraTS", "--data.root", str(tmp / "demo"), "--data.n_subjects", "3",
        "--data.num_workers", "0", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    train = [
        "--model.volume_evaluator.threshold_policy", "fixed", "--model.volume_evaluator.threshold", "0.4",
        "--model.volume_evaluator.hd95", "true",
    ]  # fmt: skip
    _run([ANOMALIB, "train", *args, *train, "--default_root_dir", str(tmp / "train")], cwd=tmp)
    (ckpt,) = (tmp / "train").rglob("model.ckpt")
    return ckpt, args


def test_checkpoint_keeps_the_training_choice(trained: tuple[Path, list[str]], tmp_path: Path) -> None:
    ckpt, args = trained
    _run([ANOMALIB, "test", *args, "--ckpt_path", str(ckpt), "--default_root_dir", str(tmp_path)], cwd=tmp_path)
    summary, table = _reports(tmp_path)
    assert summary["threshold_policy"] == "fixed"
    assert summary["threshold"] == pytest.approx(0.4)
    assert "hd95" in table.columns
    assert summary["model"]["settings"]["volume_evaluator"]["threshold"] == pytest.approx(0.4)


def test_cli_flags_override_it(trained: tuple[Path, list[str]], tmp_path: Path) -> None:
    ckpt, args = trained
    command = [ANOMALIB, "test", *args, *ORACLE_HD95, "--ckpt_path", str(ckpt), "--default_root_dir", str(tmp_path)]
    _run(command, cwd=tmp_path)
    _assert_oracle_with_hd95(*_reports(tmp_path))


def test_yaml_config(trained: tuple[Path, list[str]], tmp_path: Path) -> None:
    ckpt, args = trained
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"init_args": {"volume_evaluator": {"threshold_policy": "oracle", "hd95": True}}}})
    )
    command = [ANOMALIB, "test", *args, "--config", str(config), "--ckpt_path", str(ckpt)]
    _run([*command, "--default_root_dir", str(tmp_path / "out")], cwd=tmp_path)
    _assert_oracle_with_hd95(*_reports(tmp_path / "out"))


def test_grid_set(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "study": "volume_settings",
                "seeds": [0],
                "defaults": {
                    "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False},
                    "model": {"init_args": TINY},
                    "data": {"init_args": {"num_workers": 0}},
                },
                "datasets": {
                    "Demo": {"class_path": "DemoBraTS", "init_args": {"root": str(tmp_path / "demo"), "n_subjects": 3}}
                },
                "models": {"VanillaCLIP": {"model": {"class_path": "VanillaCLIP"}}},
                "setups": {"zero-shot": {"tasks": ["Demo"]}},
            }
        )
    )
    overrides = [
        "--set", "models.VanillaCLIP.model.init_args.volume_evaluator.threshold_policy=oracle",
        "--set", "models.VanillaCLIP.model.init_args.volume_evaluator.hd95=true",
    ]  # fmt: skip
    assert main(["run", str(grid), "--output", str(tmp_path / "out"), *overrides]) == 0
    _assert_oracle_with_hd95(*_reports(tmp_path / "out"))
