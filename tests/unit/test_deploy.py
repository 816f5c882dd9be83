# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``anomalib_medclip.deploy.OpenVINOInferencer`` compiles at f32 unless told otherwise; a missing extra is named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="needs the export extra")


@pytest.fixture
def relu_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-layer IR whose output is named as anomalib's exports name theirs."""
    import openvino.opset13 as ops

    monkeypatch.chdir(tmp_path)  # anomalib's inferencer writes its compile cache into the working directory
    image = ops.parameter([-1, 3, 4, 4], np.float32, name="input")
    output = ops.relu(image)
    output.output(0).set_names({"anomaly_map"})
    ov.save_model(ov.Model([output], [image], "relu"), tmp_path / "model.xml")
    return tmp_path / "model.xml"


def test_f32_by_default_and_an_explicit_hint_wins(relu_model: Path) -> None:
    from anomalib_medclip.deploy import OpenVINOInferencer

    inferencer = OpenVINOInferencer(relu_model)
    assert inferencer.config == {"INFERENCE_PRECISION_HINT": "f32"}
    assert inferencer.inference_precision == "f32"
    images = np.random.default_rng(0).uniform(-1, 1, (2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(inferencer.predict(images).anomaly_map, np.maximum(images, 0))
    assert OpenVINOInferencer(relu_model, precision="device_default").config == {}
    hinted = OpenVINOInferencer(relu_model, precision="bf16", config={"INFERENCE_PRECISION_HINT": "f32"})
    assert hinted.config == {"INFERENCE_PRECISION_HINT": "f32"}
    with pytest.raises(ValueError, match=r"precision must be one of f32, f16, bf16, device_default; got 'fp32'"):
        OpenVINOInferencer(relu_model, precision="fp32")


def test_openvino_export_without_the_extra_names_it(tiny_model, tmp_path: Path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"needs openvino: `pip install 'anomalib-medclip\[export\]'`"):
        tiny_model("VanillaCLIP").to_openvino(tmp_path)
    assert not any(tmp_path.iterdir())
