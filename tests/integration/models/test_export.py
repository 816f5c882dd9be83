# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""ONNX export of every model (anomalib's ``to_onnx``) run in ONNX Runtime against the model, on the tiny backbone.

The graph is traced at batch 2 and run at batch 3 (dynamic batch). The exported pre-processor resizes as the Engine
loops do (antialiased bicubic): a 48 px image through the ONNX graph equals the in-loop transform plus the model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from anomalib.deploy import TorchInferencer

from anomalib_medclip.models import list_models

ort = pytest.importorskip("onnxruntime", reason="needs the export extra")
pytest.importorskip("onnxscript", reason="needs the export extra")

EXPORT_OPTIONS = {"AnoVL": {"tta_steps": 0, "augmented_score": False}}  # its zero-shot path (TTA: torch export only)
IMAGES = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _run(path: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": images.numpy()})
    return {out.name: value for out, value in zip(session.get_outputs(), outputs, strict=True)}


@pytest.mark.parametrize("name", [name for name in list_models() if name != "VAND"])  # VAND is AprilGAN
def test_onnx_export_equals_the_model(name: str, tiny_model, tmp_path: Path) -> None:
    model = tiny_model(name, **EXPORT_OPTIONS.get(name, {}))
    model.eval()
    path = model.to_onnx(tmp_path, input_size=(32, 32))
    assert sorted(p.name for p in path.parent.iterdir()) in (["model.onnx"], ["model.onnx", "model.onnx.data"])
    got = _run(path, IMAGES)
    with torch.no_grad():
        expected = model(IMAGES)
    assert got["pred_score"].shape == (3,)
    np.testing.assert_allclose(got["pred_score"], expected.pred_score.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["anomaly_map"], expected.anomaly_map.numpy(), atol=1e-4, rtol=0)


def test_exported_resize_equals_the_engine_loops(tiny_model, tmp_path: Path) -> None:
    model = tiny_model("VanillaCLIP")
    model.eval()
    path = model.to_onnx(tmp_path, input_size=(48, 48))
    images = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    got = _run(path, images)
    with torch.no_grad():
        in_loop = model.model(model.pre_processor.transform(images))  # what Engine.test/predict computes
        normalize = model.pre_processor.transform.transforms[1]  # anomalib's export resize: no antialiasing
        unaliased = model.model(normalize(torch.nn.functional.interpolate(images, size=(32, 32), mode="bicubic")))
    np.testing.assert_allclose(got["anomaly_map"], in_loop.anomaly_map.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["pred_score"], in_loop.pred_score.numpy(), atol=1e-4, rtol=0)
    assert np.abs(got["anomaly_map"] - unaliased.anomaly_map.numpy()).max() > 1e-3  # the resize matters here


def test_anovl_test_time_adaptation_refuses_onnx_by_option(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tta_steps=0"):
        tiny_model("AnoVL").to_onnx(tmp_path, input_size=(32, 32))
    assert not any(tmp_path.iterdir())


def test_stock_cli_exports_torch_and_onnx_equal_to_the_checkpoint(tiny_model, tmp_path: Path, monkeypatch) -> None:
    model = tiny_model("VanillaCLIP")
    model.setup("test")
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    model.eval()
    with torch.no_grad():
        expected = model(IMAGES)
    anomalib = str(Path(sys.executable).with_name("anomalib"))
    for export_type in ("torch", "onnx"):
        args = [
            anomalib, "export", "--model", "VanillaCLIP", "--model.backbone", "ViT-tiny-test", "--model.pretrained",
            "null", "--model.image_size", "32", "--ckpt_path", str(tmp_path / "model.ckpt"), "--export_type",
            export_type, "--input_size", "[32,32]", "--export_root", str(tmp_path / export_type),
        ]  # fmt: skip
        proc = subprocess.run(args, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # anomalib unpickles exported models only when told: ours, fresh
    inferencer = TorchInferencer(tmp_path / "torch/weights/torch/model.pt", device="cpu")
    for index, image in enumerate(IMAGES):
        prediction = inferencer.predict(image)
        with torch.no_grad():
            single = model(IMAGES[index : index + 1])  # the same batch of one
        torch.testing.assert_close(prediction.pred_score.flatten().detach(), single.pred_score, atol=1e-6, rtol=0)
        torch.testing.assert_close(prediction.anomaly_map.detach(), single.anomaly_map[0], atol=1e-6, rtol=0)
    (onnx_file,) = (tmp_path / "onnx").rglob("model.onnx")  # with its external-data file, if any, beside it
    got = _run(onnx_file, IMAGES)
    np.testing.assert_allclose(got["pred_score"], expected.pred_score.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["anomaly_map"], expected.anomaly_map.numpy(), atol=1e-4, rtol=0)
