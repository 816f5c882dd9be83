# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Exported-vs-PyTorch differences of every model on the tiny test backbone, in ONNX Runtime and OpenVINO f32.

Each model is exported once with a dynamic input size (ONNX; OpenVINO reads the same file as ``to_openvino`` converts
it) and run at batch 3 on images at the backbone's size and larger (resized in the graph). Prints the largest
score / map difference to the model in PyTorch, as a Markdown table (the README's).

    python benchmarks/export_parity_table.py --sizes 32 48
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile

import numpy as np
import onnxruntime as ort
import torch

from anomalib_medclip import models
from anomalib_medclip.deploy import OpenVINOInferencer
from anomalib_medclip.models import get_model, list_models

TINY = {"backbone": "ViT-tiny-test", "pretrained": None, "image_size": 32}
OPTIONS = {
    "AnoVL": {"tta_steps": 0},  # its zero-shot path (test-time adaptation: torch export only)
    "AACLIP": {"smoothing_kernel": 3},  # the tiny backbone's 4x4 patch grid: a smaller kernel, fewer clusters
    "AdaCLIP": {"k_clusters": 2},
}


def _diff(got: dict[str, np.ndarray], expected: object) -> str:
    score = np.abs(got["pred_score"] - expected.pred_score.numpy()).max()
    anomaly_map = np.abs(got["anomaly_map"].reshape(expected.anomaly_map.shape) - expected.anomaly_map.numpy()).max()
    return f"{score:.1e} / {anomaly_map:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 48])
    parser.add_argument("--models", nargs="+", default=[n for n in list_models() if n != "VAND"])  # VAND: AprilGAN
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp())  # anomalib's OpenVINO inferencer writes its compile cache into the working directory
    header = [f"{runtime}, {size} px" for size in args.sizes for runtime in ("ONNX Runtime", "OpenVINO f32")]
    print("| model | " + " | ".join(header) + " |\n|---|" + "---|" * len(header))
    for name in args.models:
        prompted = "object_name" in inspect.signature(getattr(models, name)).parameters  # not object-agnostic ones
        model = get_model(name, **TINY, **({"object_name": "toy"} if prompted else {}), **OPTIONS.get(name, {}))
        model.setup("test")
        model.eval()
        path = model.to_onnx(tempfile.mkdtemp())
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        openvino = OpenVINOInferencer(path)
        cells = []
        for size in args.sizes:
            images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(size))
            expected = model(images)
            outputs = session.run(None, {"input": images.numpy()})
            runtime = dict(zip([o.name for o in session.get_outputs()], outputs, strict=True))
            predicted = openvino.predict(images)
            ov_out = {"pred_score": predicted.pred_score, "anomaly_map": predicted.anomaly_map}
            cells += [_diff(runtime, expected), _diff(ov_out, expected)]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
