# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""ONNX export of every model (anomalib's ``to_onnx``) run in ONNX Runtime against the model, on the tiny backbone.

The graph is traced at batch 2 and run at batch 3 (dynamic batch). The exported pre-processor resizes as the Engine
loops do (antialiased bicubic): a 48 px image through the ONNX graph equals the in-loop transform plus the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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
