# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Export of a real-size model: time, artefact size, and exported-vs-in-loop agreement and latency per runtime.

Builds a model on a real architecture with random weights (no download), exports it to torch, ONNX and OpenVINO, and
runs the same images, larger than the backbone's input as medical images are, through the Engine's in-loop path
(torchvision pre-processing under ``torch.inference_mode``) and through each exported artefact: anomalib's
``TorchInferencer``, ONNX Runtime, and OpenVINO at f32 and at the device's default precision. Prints the largest
score and map differences to the in-loop result and the median latency per batch, side by side in one run.

    python benchmarks/bench_export.py --model VanillaCLIP --backbone ViT-B-16 --size 512 --batch 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _shared import timed
from anomalib.deploy import TorchInferencer

from anomalib_medclip.deploy import OpenVINOInferencer
from anomalib_medclip.models import get_model


def _size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="VanillaCLIP")
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--size", type=int, default=512, help="side of the test images (the model resizes them)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = get_model(args.model, backbone=args.backbone, pretrained=None, object_name="brain MRI slice")
    model.setup("test")
    model.eval()
    images = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))

    def in_loop() -> tuple[np.ndarray, np.ndarray]:
        """The Engine's test/predict loops: torchvision transform, model and post-processor under inference mode."""
        with torch.inference_mode():
            batch = model.model(model.pre_processor.transform(images))
            return _pair(model.post_processor(batch) if model.post_processor else batch)

    print(f"{args.model} on {args.backbone} (random weights), {args.batch} images of {args.size} px, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip

    root = Path(tempfile.mkdtemp(prefix="bench_export_"))
    os.chdir(root)  # anomalib's OpenVINO inferencer writes its compile cache into the working directory
    paths, seconds = {}, {}
    for kind, export in (("torch", model.to_torch), ("onnx", model.to_onnx), ("openvino", model.to_openvino)):
        start = time.perf_counter()
        paths[kind] = export(root / kind)
        seconds[kind] = time.perf_counter() - start
    print("\n| format | export s | artefacts MiB | files |\n|---|---|---|---|")
    for kind, path in paths.items():
        files = ", ".join(sorted(p.name for p in path.parent.iterdir()))
        print(f"| {kind} | {seconds[kind]:.1f} | {_size_mib(path.parent):.1f} | {files} |")

    os.environ["TRUST_REMOTE_CODE"] = "1"  # our own freshly exported pickle
    torch_inferencer = TorchInferencer(paths["torch"], device="cpu")
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    ov_f32 = OpenVINOInferencer(paths["openvino"])
    ov_default = OpenVINOInferencer(paths["openvino"], precision="device_default")
    runners = {
        "in-loop (Engine transform + model)": in_loop,
        "TorchInferencer (anomalib)": lambda: _pair(torch_inferencer.predict(images)),
        "ONNX Runtime": lambda: _pair(dict(zip(names, session.run(None, {"input": images.numpy()}), strict=True))),
        f"OpenVINO {ov_f32.inference_precision}": lambda: _pair(ov_f32.predict(images)),
        f"OpenVINO device default ({ov_default.inference_precision})": lambda: _pair(ov_default.predict(images)),
    }  # fmt: skip
    reference_score, reference_map = in_loop()
    print("\n| runtime | max score diff | max map diff | median s per batch |\n|---|---|---|---|")
    for name, run in runners.items():
        score, anomaly_map = run()
        latency = timed(run, args.repeats)
        score_diff = np.abs(score.reshape(-1) - reference_score.reshape(-1)).max()
        map_diff = np.abs(anomaly_map - reference_map).max()
        print(f"| {name} | {score_diff:.2e} | {map_diff:.2e} | {latency:.3f} |")


def _pair(prediction: object) -> tuple[np.ndarray, np.ndarray]:
    """(scores, flattened maps) as numpy arrays, from an inferencer's batch or a name-to-array mapping."""
    get = prediction.get if isinstance(prediction, dict) else lambda name: getattr(prediction, name)
    score, anomaly_map = (np.asarray(torch.as_tensor(get(name)).detach()) for name in ("pred_score", "anomaly_map"))
    return score.reshape(-1), anomaly_map.reshape(len(score.reshape(-1)), -1)


if __name__ == "__main__":
    main()
