# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Cost of BiomedCLIP's tower kinds: a model on a BiomedCLIP-shaped backbone vs on an open_clip CLIP of equal size.

One run, random weights, the same images, fp32, two architectures of equal width and depth written to a temporary
folder and registered with open_clip:

- ``bench-BiomedCLIP``: BiomedCLIP's shape: timm ``vit_base_patch16_224`` (12 x 768) + a Hugging Face BERT-base
  (12 x 768, MLP 3072, 256 tokens, [CLS] pooling, MLP projection; the package's tiny test vocabulary stands in for
  PubMedBERT's, which only changes the embedding table rows that are read);
- ``bench-ViT-B-16-text768``: open_clip's ViT-B/16 (12 x 768) + CLIP's causal text transformer widened to 12 x 768
  (MLP 3072, 77 tokens), so that both text towers have the same width and depth.

Per model, the median time of a training step (``forward_train`` and a backward pass through the learnt parts; the
text tower runs every step for the methods that learn text prompts) or, for models without learnt text, of an
inference call (the fixed text is cached by the backbone), at 224 px. The two backbones are timed alternately so
that machine load affects both alike. Target (issue 14): ratio BiomedCLIP / CLIP <= 1.2.

Usage:
    python benchmarks/bench_biomed_backbone.py [--models AnomalyCLIP MedCrossModalCLIP VanillaCLIP] [--batch 2]
        [--repeats 5] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch

from anomalib_medclip.backbones import loading
from anomalib_medclip.models import get_model

BIOMED, CLIP = "bench-BiomedCLIP", "bench-ViT-B-16-text768"
OPTIONS = {
    "AnomalyCLIP": {},
    "AdaCLIP": {"object_name": "brain MRI scan"},
    "MedCrossModalCLIP": {"object_name": "brain MRI scan"},
    "AprilGAN": {"object_name": "brain MRI scan"},
    "VanillaCLIP": {"object_name": "brain MRI scan"},
}
TRAIN_STEP = {"AnomalyCLIP", "AdaCLIP", "MedCrossModalCLIP"}  # methods whose text features change while training


def register_architectures(folder: Path) -> None:
    """Write both architectures' open_clip configs (and the BERT folder) and register them."""
    bert = folder / "bert-base"
    tiny = Path(loading.__file__).parent / "configs" / loading.TINY_BIOMED_BACKBONE
    shutil.copytree(tiny, bert)
    config = json.loads((bert / "config.json").read_text())
    config.update(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12)
    config.update(intermediate_size=3072)
    (bert / "config.json").write_text(json.dumps(config))
    biomed = {
        "embed_dim": 512,
        "vision_cfg": {
            "timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False, "timm_pool": "",
            "timm_proj": "linear", "image_size": 224,
        },
        "text_cfg": {
            "hf_model_name": str(bert), "hf_tokenizer_name": str(bert), "hf_model_pretrained": False,
            "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 256,
        },
    }  # fmt: skip
    clip = {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12},
    }
    for name, cfg in ((BIOMED, biomed), (CLIP, clip)):
        path = folder / f"{name}.json"
        path.write_text(json.dumps(cfg))
        open_clip.add_model_config(path)


def step_fn(name: str, backbone: str, images: torch.Tensor) -> Callable[[], None]:
    """One training step (learnt text) or one inference call (fixed text) of ``name`` on ``backbone``."""
    model = get_model(name, backbone=backbone, pretrained=None, image_size=images.shape[-1], **OPTIONS[name])
    torch_model = model.model.to(images.device)
    if not torch_model.text_ready:
        torch_model.setup_text(torch_model.object_name or OPTIONS[name]["object_name"])
    if name not in TRAIN_STEP:
        torch_model.eval()

        def infer() -> None:
            with torch.no_grad():
                torch_model(images)

        return infer
    torch_model.train()

    def train() -> None:
        outputs = torch_model.forward_train(images)
        flat = [t for o in outputs for t in (o if isinstance(o, list) else [o]) if isinstance(t, torch.Tensor)]
        sum(t.float().mean() for t in flat).backward()
        torch_model.zero_grad(set_to_none=True)

    return train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["AnomalyCLIP", "MedCrossModalCLIP", "VanillaCLIP"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        register_architectures(Path(tmp))
        print(f"device {device}, {args.threads} thread(s), batch {args.batch} at 224 px, median of {args.repeats}")
        print("model\tstep\tBiomedCLIP-shaped s\tCLIP ViT-B/16 (text 768) s\tratio")
        for name in args.models:
            fns = {backbone: step_fn(name, backbone, images) for backbone in (BIOMED, CLIP)}
            times: dict[str, list[float]] = {BIOMED: [], CLIP: []}
            for fn in fns.values():  # warm-up
                fn()
            for _ in range(args.repeats):
                for backbone, fn in fns.items():  # alternate: load affects both alike
                    _sync(device)
                    start = time.perf_counter()
                    fn()
                    _sync(device)
                    times[backbone].append(time.perf_counter() - start)
            biomed, clip = (float(np.median(times[b])) for b in (BIOMED, CLIP))
            kind = "train" if name in TRAIN_STEP else "infer"
            print(f"{name}\t{kind}\t{biomed:.3f}\t{clip:.3f}\t{biomed / clip:.2f}")


if __name__ == "__main__":
    main()
