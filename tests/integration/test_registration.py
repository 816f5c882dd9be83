# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The stock ``anomalib`` command and anomalib's registry see the plugin; start-up stays light (subprocesses).

The in-process checks are in ``tests/unit/test_registration.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ANOMALIB = shutil.which("anomalib") or str(Path(sys.executable).parent / "anomalib")
TINY = ["--model.backbone", "ViT-tiny-test", "--model.pretrained", "null", "--model.image_size", "32"]


def _run(args: list[str], cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600, check=False
    )


def _python(code: str, **env: str) -> str:
    proc = _run([sys.executable, "-c", code], **env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_interpreter_start_imports_nothing_heavy() -> None:
    loaded = (
        "import sys; print(sorted(m for m in ('torch', 'anomalib', 'anomalib_medclip', 'typing') if m in sys.modules))"
    )
    assert _python(loaded) == "[]"
    assert _python("import anomalib, sys; print('torch' in sys.modules, 'anomalib_medclip' in sys.modules)") == (
        "False False"
    )


def test_plugin_loads_after_anomalib_models_and_can_be_switched_off() -> None:
    code = "import anomalib.models, sys; print('anomalib_medclip' in sys.modules)"
    assert _python(code).endswith("True")
    assert _python(code, ANOMALIB_MEDCLIP_AUTOLOAD="0").endswith("False")


def test_anomalib_get_model_finds_plugin_by_short_name() -> None:
    code = (
        "from anomalib.models import get_model\n"
        "m = get_model('VanillaCLIP', backbone='ViT-tiny-test', pretrained=None, image_size=32)\n"
        "print(type(m).__module__)"
    )
    assert _python(code).endswith("anomalib_medclip.models.vanilla_clip.lightning_model")


def test_stock_cli_help_by_short_name_and_full_path() -> None:
    proc = _run([ANOMALIB, "train", "--model.help", "VanillaCLIP"])
    assert proc.returncode == 0, proc.stderr
    assert "--model.finetune_layers" in proc.stdout
    proc = _run([ANOMALIB, "train", "--model", "VanillaCLIP", "--help"])
    assert proc.returncode == 0, proc.stderr
    proc = _run(
        [ANOMALIB, "train", "--model.help", "anomalib_medclip.models.VanillaCLIP"], ANOMALIB_MEDCLIP_AUTOLOAD="0"
    )
    assert proc.returncode == 0, proc.stderr
    assert "--model.object_name" in proc.stdout


def test_stock_cli_train_test_predict_from_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    data = [
        "--data", "Folder", "--data.name", "toy", "--data.root", str(image_folder), "--data.normal_dir", "good",
        "--data.abnormal_dir", "bad", "--data.mask_dir", "masks", "--data.num_workers", "0",
    ]  # fmt: skip
    common = ["--model", "VanillaCLIP", *TINY, "--model.object_name", "toy", *data, "--trainer.accelerator", "cpu"]
    proc = _run([ANOMALIB, "train", *common, "--default_root_dir", str(tmp_path / "results")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = (tmp_path / "results").rglob("model.ckpt")
    assert ckpt.stat().st_size < 5 * 2**20
    proc = _run([ANOMALIB, "test", *common, "--ckpt_path", str(ckpt)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "image_AUROC" in proc.stdout + proc.stderr
    predict = [
        ANOMALIB,
        "predict",
        "--model",
        "VanillaCLIP",
        *TINY,
        "--model.object_name",
        "toy",
        "--ckpt_path",
        str(ckpt),
    ]
    proc = _run([*predict, "--data", str(image_folder / "bad"), "--trainer.accelerator", "cpu"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predicted = {p.name for p in (tmp_path / "results" / "VanillaCLIP" / "latest" / "images" / "bad").iterdir()}
    assert predicted == {p.name for p in (image_folder / "bad").iterdir()}


def test_stock_cli_resolves_the_vand_alias() -> None:
    proc = _run([ANOMALIB, "train", "--model.help", "VAND"])
    assert proc.returncode == 0, proc.stderr
    assert "anomalib_medclip.VAND" in proc.stdout
    assert "--model.k_shot" in proc.stdout


def _bmad_brain_tree(source: Path, root: Path) -> Path:
    """A tiny BMAD Brain category (``train/good``, ``valid``/``test`` with ``img/`` and ``label/``) from demo images."""
    normal, abnormal = sorted((source / "good").iterdir()), sorted((source / "bad").iterdir())
    category = root / "BraTS2021_slice"
    for split, part in (("valid", slice(0, 3)), ("test", slice(3, 6))):
        copies = [(image, category / split / "good" / "img") for image in normal[part]]
        for image in abnormal[part]:
            copies += [(image, category / split / "Ungood" / "img")]
            copies += [(source / "masks" / image.name, category / split / "Ungood" / "label")]
        for src, target in copies:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
    (category / "train" / "good").mkdir(parents=True)
    for image in normal[:3]:
        shutil.copy(image, category / "train" / "good")
    return root


DEMO = ["--data", "DemoBraTS", "--data.n_subjects", "4"]
EPOCH = ["--trainer.max_epochs", "1"]


@pytest.mark.parametrize(
    ("model", "options", "data", "outputs"),
    [
        ("MedCrossModalCLIP", [], [*DEMO, *EPOCH], True),
        ("AprilGAN", [], [*DEMO, *EPOCH], True),
        ("AnomalyCLIP", [], [*DEMO, *EPOCH], False),
        # the cheapest settings of the two slowest models at 32 px: AdaCLIP without per-image text prompts (48
        # sentences per image dominate at tiny image sizes), AnoVL without the 21 extra views of its image score
        ("AdaCLIP", ["--model.prompting_branch", "V"], [*DEMO, *EPOCH], False),
        ("AnoVL", ["--model.domains", "[MRI scan]", "--model.augmented_score", "false"], DEMO, False),
        ("VanillaCLIP", [], ["--data", "MedBMAD", "--data.category", "Brain"], False),
    ],
)
def test_stock_cli_on_medical_datamodules(
    model: str, options: list[str], data: list[str], outputs: bool, image_folder: Path, tmp_path: Path
) -> None:
    """``outputs``: also check the 3D outputs and a prediction on an unlabelled scan (model-independent: two models)."""
    demo = "DemoBraTS" in data
    root = str(tmp_path / "demo_brats") if demo else str(_bmad_brain_tree(image_folder, tmp_path / "bmad"))
    model_args = ["--model", model, *TINY, *options]
    args = [*model_args, *data, "--data.root", root, "--data.num_workers", "0", "--trainer.accelerator", "cpu"]
    proc = _run([ANOMALIB, "train", *args, "--default_root_dir", str(tmp_path / "results")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "image_AUROC" in proc.stdout
    (ckpt,) = (tmp_path / "results").rglob("model.ckpt")
    proc = _run([ANOMALIB, "test", *args, "--ckpt_path", str(ckpt)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "image_AUROC" in proc.stdout
    if outputs:
        _check_volume_outputs(tmp_path / "results", Path(root))
        _check_predict_on_unlabelled_scan(model_args, ckpt, Path(root), tmp_path)


def _check_volume_outputs(results: Path, root: Path) -> None:
    """NIfTI outputs overlay the source scans; Dice recomputed from the written masks equals the CSV."""
    import nibabel as nib
    import numpy as np
    import pandas as pd

    (table_path,) = results.rglob("volumes/metrics_per_volume.csv")
    table = pd.read_csv(table_path)
    assert len(table) >= 1
    assert {"voxel_auroc", "threshold_policy"} <= json.loads((table_path.parent / "summary.json").read_text()).keys()
    for row in table.itertuples():
        scan = nib.load(root / row.volume_id / f"{row.volume_id}-t2w.nii.gz")
        seg = np.asanyarray(nib.load(root / row.volume_id / f"{row.volume_id}-seg.nii.gz").dataobj) > 0
        for kind in ("anomaly_map", "pred_mask"):
            out = nib.load(table_path.parent / f"{row.volume_id}_{kind}.nii.gz")
            assert out.shape == scan.shape
            assert np.allclose(out.affine, scan.affine)
        pred = np.asanyarray(nib.load(table_path.parent / f"{row.volume_id}_pred_mask.nii.gz").dataobj) > 0
        brain = np.asanyarray(scan.dataobj) > 0
        p, g = pred & brain, seg & brain
        dice = 2 * (p & g).sum() / (p.sum() + g.sum()) if g.any() else float("nan")
        assert dice == pytest.approx(row.dice, abs=1e-6, nan_ok=True)
    assert {p.name for p in table_path.parent.glob("*.png")} == {
        "dice_2d_vs_3d.png", "dice_vs_distance.png", "lesion_size_vs_dice.png"
    }  # fmt: skip


def _check_predict_on_unlabelled_scan(model_args: list[str], ckpt: Path, root: Path, tmp_path: Path) -> None:
    import nibabel as nib

    scan = sorted(root.glob("*/*-t2w.nii.gz"))[0]
    args = [*model_args, "--ckpt_path", str(ckpt), "--data", "NiftiScans", "--data.path", str(scan)]
    proc = _run([ANOMALIB, "predict", *args, "--data.num_workers", "0", "--trainer.accelerator", "cpu"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = scan.name.removesuffix(".nii.gz")
    (report,) = (tmp_path / "results").rglob(f"volumes/{stem}.json")
    assert {"max_slice_score", "anomalous_volume_ml", "slices_flagged"} <= json.loads(report.read_text()).keys()
    for kind in ("anomaly_map", "pred_mask"):
        out = nib.load(report.parent / f"{stem}_{kind}.nii.gz")
        assert out.shape == nib.load(scan).shape


def test_stock_train_is_reproducible_and_logs_the_epoch_loss(tmp_path: Path) -> None:
    """anomalib 2.7 ignores ``--seed_everything``: the model seeds the run, so two fresh processes agree exactly."""
    import pandas as pd

    args = [
        "--model", "MedCrossModalCLIP", *TINY, "--data", "DemoBraTS", "--data.root", str(tmp_path / "demo"),
        "--data.n_subjects", "4", "--data.num_workers", "0", "--trainer.max_epochs", "1",
        "--trainer.accelerator", "cpu", "--trainer.logger", "CSVLogger",
    ]  # fmt: skip
    tables = []
    for run in ("a", "b"):
        out = tmp_path / run
        proc = _run([ANOMALIB, "train", *args, "--trainer.logger.save_dir", str(out), "--default_root_dir", str(out)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        (csv,) = out.rglob("metrics.csv")
        tables.append(pd.read_csv(csv))
    assert tables[0]["train_loss_epoch"].notna().sum() == 1  # 3 steps < Lightning's logging interval of 50
    assert {"image_AUROC", "pixel_AUROC", "voxel_auroc"} <= set(tables[0].columns)
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)


def test_anomalib_benchmark_runs_plugin_models_by_short_name(tmp_path: Path) -> None:
    import pandas as pd

    config = tmp_path / "benchmark.yaml"
    config.write_text(
        "accelerator: [cpu]\n"
        "benchmark:\n"
        "  seed: 0\n"
        "  model:\n"
        "    class_path: {grid: [VanillaCLIP, MedCrossModalCLIP]}\n"
        "    init_args: {backbone: ViT-tiny-test, pretrained: null, image_size: 32, finetune_layers: 1,"
        " object_name: toy}\n"
        f"  data: {{class_path: DemoImages, init_args: {{root: {tmp_path / 'demo'}}}}}\n"
    )
    proc = _run([ANOMALIB, "benchmark", "--config", str(config)], cwd=tmp_path, PL_TRAINER_MAX_EPOCHS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "errors" not in proc.stdout
    (csv,) = (tmp_path / "runs" / "benchmark").rglob("results.csv")
    table = pd.read_csv(csv)
    assert sorted(table["model.class_path"]) == ["MedCrossModalCLIP", "VanillaCLIP"]
    assert table["image_AUROC"].between(0, 1).all()
