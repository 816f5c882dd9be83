# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Export of every model (anomalib's ``to_onnx``/``to_openvino``/``to_torch``) run against the model, tiny backbone.

The graph is traced at batch 2 and run at batch 3 (dynamic batch) in ONNX Runtime and in OpenVINO (through the
package's ``OpenVINOInferencer``: FP32 on every CPU). The exported pre-processor resizes as the Engine loops do
(antialiased bicubic): a 48 px image through the ONNX graph equals the in-loop transform plus the model. The stock
``anomalib export`` of all three formats, run through anomalib's inferencers, equals ``Engine.predict``.
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
from anomalib.engine import Engine
from PIL import Image

from anomalib_medclip.models import list_models

ort = pytest.importorskip("onnxruntime", reason="needs the export extra")
pytest.importorskip("onnxscript", reason="needs the export extra")
pytest.importorskip("openvino", reason="needs the export extra")

from anomalib_medclip.deploy import OpenVINOInferencer  # noqa: E402  (after the skip: it needs openvino)

EXPORT_OPTIONS = {"AnoVL": {"tta_steps": 0}}  # its zero-shot path (test-time adaptation: torch export only)
IMAGES = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _run(path: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": images.numpy()})
    return {out.name: value for out, value in zip(session.get_outputs(), outputs, strict=True)}


@pytest.mark.parametrize("name", [name for name in list_models() if name != "VAND"])  # VAND is AprilGAN
def test_onnx_export_equals_the_model_in_onnx_runtime_and_openvino(
    name: str, tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anomalib's OpenVINO inferencer writes its compile cache into the working directory
    model = tiny_model(name, **EXPORT_OPTIONS.get(name, {}))
    model.eval()
    path = model.to_onnx(tmp_path, input_size=(32, 32))
    assert sorted(p.name for p in path.parent.iterdir()) in (["model.onnx"], ["model.onnx", "model.onnx.data"])
    with torch.no_grad():
        expected = model(IMAGES)
    got = _run(path, IMAGES)
    assert got["pred_score"].shape == (3,)
    np.testing.assert_allclose(got["pred_score"], expected.pred_score.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["anomaly_map"], expected.anomaly_map.numpy(), atol=1e-4, rtol=0)
    openvino = OpenVINOInferencer(path)  # reads the ONNX file as `to_openvino` converts it
    assert openvino.inference_precision == "f32"
    got = openvino.predict(IMAGES)  # the FP32 bound; seen <= 1.2e-4 (AdaCLIP), else <= 1.1e-5 (README)
    np.testing.assert_allclose(got.pred_score, expected.pred_score.numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(got.anomaly_map, expected.anomaly_map.numpy(), atol=1e-3, rtol=0)


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


def test_stock_cli_exports_equal_engine_predict_through_anomalibs_inferencers(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anomalib.data.utils import read_image
    from anomalib.deploy import OpenVINOInferencer as AnomalibOpenVINOInferencer

    monkeypatch.chdir(tmp_path)  # anomalib's OpenVINO inferencer writes its compile cache into the working directory
    model = tiny_model("VanillaCLIP")
    model.setup("test")
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    folder = tmp_path / "images"
    folder.mkdir()
    files = [folder / f"{index}.png" for index in range(3)]
    for file, image in zip(files, torch.rand(3, 48, 48, 3, generator=torch.Generator().manual_seed(2)), strict=True):
        Image.fromarray((image.numpy() * 255).astype(np.uint8)).save(file)
    anomalib = str(Path(sys.executable).with_name("anomalib"))
    for export_type in ("torch", "onnx", "openvino"):
        args = [
            anomalib, "export", "--model", "VanillaCLIP", "--model.backbone", "ViT-tiny-test", "--model.pretrained",
            "null", "--model.image_size", "32", "--ckpt_path", str(tmp_path / "model.ckpt"), "--export_type",
            export_type, "--export_root", str(tmp_path / export_type),
        ]  # fmt: skip
        proc = subprocess.run(args, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "openvino/weights/openvino").iterdir()) == ["model.bin", "model.xml"]

    engine = Engine(accelerator="cpu", logger=False, default_root_dir=tmp_path / "engine", enable_progress_bar=False)
    engine_out = {  # the Engine's own reading, resizing and post-processing, per file
        Path(path): (batch.pred_score.flatten()[i].numpy(), batch.anomaly_map[i].reshape(1, 32, 32).numpy())
        for batch in engine.predict(model=model, data_path=folder)
        for i, path in enumerate(batch.image_path)
    }
    assert sorted(engine_out) == files

    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # anomalib unpickles exported models only when told: ours, fresh
    torch_inferencer = TorchInferencer(tmp_path / "torch/weights/torch/model.pt", device="cpu")
    ov_files = {"path": tmp_path / "openvino/weights/openvino/model.xml", "device": "CPU"}
    openvino = AnomalibOpenVINOInferencer(**ov_files, config={"INFERENCE_PRECISION_HINT": "f32"})
    (onnx_file,) = (tmp_path / "onnx").rglob("model.onnx")  # with its external-data file, if any, beside it
    images = torch.stack([read_image(file, as_tensor=True) for file in files])
    runtime = _run(onnx_file, images)
    model.eval()  # as exported; eval-mode calls run without autograd, as the Engine's loops
    in_process = model(images)
    for index, file in enumerate(files):
        prediction = torch_inferencer.predict(file)  # anomalib reads the file; the exported module runs as in-process
        single = model(images[index : index + 1])
        assert torch.equal(prediction.pred_score.flatten(), single.pred_score)
        assert torch.equal(prediction.anomaly_map, single.anomaly_map[0])
        for score, anomaly_map in (
            (prediction.pred_score.flatten().numpy(), prediction.anomaly_map.numpy()),
            (openvino.predict(file).pred_score, openvino.predict(file).anomaly_map),
            (runtime["pred_score"][index : index + 1], runtime["anomaly_map"][index]),
            (in_process.pred_score[index : index + 1].numpy(), in_process.anomaly_map[index].numpy()),
        ):
            np.testing.assert_allclose(score.reshape(()), engine_out[file][0], atol=1e-4, rtol=0)
            np.testing.assert_allclose(anomaly_map.reshape(1, 32, 32), engine_out[file][1], atol=1e-4, rtol=0)
