# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AprilGAN vs the original APRIL-GAN code: text set-up time and zero-shot inference time per image.

One run, one random open_clip ViT-B-16 state dict loaded into both (the original's vendored open_clip and our
``CLIPBackbone``), the same linear adapters, the same random images, fp32:

- text set-up: the 420-sentence prompt ensemble of one object (original: 77-token sequences; ours: one tokenisation,
  groups of equal length truncated at the end-of-text token);
- inference s/image at each size: original at batch 1 (its code cannot batch), ours at batch 1 and 8.

The original is read from ``$MEDCLIP_ORIGINALS/ByChelsea+VAND-APRIL-GAN`` (see ``tests/README.md``); without it only
our figures are printed. Targets (issue 7): text set-up >= 3x faster; inference at least as fast at 224 px.

Usage:
    MEDCLIP_ORIGINALS=/path/to/originals python benchmarks/bench_april_gan_vs_original.py [--sizes 224 512]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from anomalib_medclip.models.april_gan import AprilGAN
from anomalib_medclip.models.april_gan.torch_model import encode_prompt_ensemble

LAYERS = [3, 6, 9, 12]
OBJECT = "brain MRI scan"


def _timed(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> tuple[float, object]:
    """Median wall time of ``fn`` over ``repeats`` runs (after one warm-up run), and its last result."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def _import_alias(alias: str, init: Path, package: bool) -> ModuleType:
    locations = {"submodule_search_locations": [str(init.parent)]} if package else {}
    spec = importlib.util.spec_from_file_location(alias, init, **locations)
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


class Original:
    """The original's modules under aliases, with ``test.py``'s zero-shot arithmetic (batch 1)."""

    def __init__(self, root: Path, state: dict[str, torch.Tensor], linear_state: dict, device: str) -> None:
        if device == "cpu":  # its vision transformer puts an unused tensor on 'cuda'
            to = torch.Tensor.to
            torch.Tensor.to = lambda t, *a, **k: t if a[:1] == ("cuda",) else to(t, *a, **k)
        self.voc = _import_alias("vand_open_clip", root / "open_clip" / "__init__.py", package=True)
        self.prompts = _import_alias("vand_prompt_ensemble", root / "prompt_ensemble.py", package=False)
        self.linear = _import_alias("vand_model", root / "model.py", package=False).LinearLayer(
            768, 512, len(LAYERS), "ViT-B-16"
        )
        self.linear.load_state_dict(linear_state)
        self.linear.to(device)
        self.state, self.device, self.models = state, device, {}
        self.tokenizer = self.voc.get_tokenizer("ViT-B-16")

    def model(self, size: int) -> torch.nn.Module:
        if size not in self.models:
            model = self.voc.create_model("ViT-B-16", size, pretrained=None)
            sized = dict(self.state)
            sys.modules["vand_open_clip.model"].resize_pos_embed(sized, model)
            model.load_state_dict(sized)
            self.models[size] = model.to(self.device).eval()
        return self.models[size]

    def text(self) -> torch.Tensor:
        with torch.no_grad():
            features = self.prompts.encode_text_with_prompt_ensemble(
                self.model(224), [OBJECT], self.tokenizer, self.device
            )
        return features[OBJECT]

    def infer(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = image.shape[-1]
        with torch.no_grad():
            pooled, taps = self.model(size).encode_image(image, LAYERS)
            score = (100.0 * F.normalize(pooled, dim=-1) @ text).softmax(dim=-1)[0, 1]
            total = torch.zeros(1, size, size, device=image.device)
            for tokens in self.linear(list(taps)):
                logits = (100.0 * F.normalize(tokens, dim=-1) @ text).permute(0, 2, 1)
                grid = int(np.sqrt(logits.shape[-1]))
                logits = logits.reshape(1, 2, grid, grid)
                up = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
                total += up.softmax(dim=1)[:, 1]
        return score, total


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, ViT-B-16 random weights, fp32")

    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None).state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vit_b_16.pt"
        torch.save(state, weights)
        models = {
            size: AprilGAN(backbone="ViT-B-16", pretrained=str(weights), image_size=size).model.to(args.device).eval()
            for size in args.sizes
        }
    linear_state = {f"fc.{k}": v for k, v in models[args.sizes[0]].fc.state_dict().items()}

    root = Path(os.environ.get("MEDCLIP_ORIGINALS", "")) / "ByChelsea+VAND-APRIL-GAN"
    original = None
    if os.environ.get("MEDCLIP_ORIGINALS") and root.is_dir():
        original = Original(root, state, linear_state, args.device)
    else:
        print("MEDCLIP_ORIGINALS is unset or lacks ByChelsea+VAND-APRIL-GAN/: the original is skipped.")

    backbone = models[args.sizes[0]].backbone
    ours_text, _ = _timed(lambda: (backbone.clear_text_cache(), encode_prompt_ensemble(backbone, OBJECT)), args.repeats)
    for model in models.values():
        model.setup_text(OBJECT)
    print(f"\ntext set-up (420 sentences, '{OBJECT}'): ours {ours_text:.2f} s", end="")
    if original is not None:
        original.model(224)
        original_text, text = _timed(original.text, 1, warm_up=False)  # about a minute on 2 CPU cores
        delta = (text - models[args.sizes[0]].text_features).abs().max()
        print(f", original {original_text:.2f} s, speed-up {original_text / ours_text:.1f}x (max |dT| {delta:.1e})")
    else:
        print()

    print("\ninference, s/image (zero-shot score + map):")
    for size in args.sizes:
        model = models[size]
        images = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(2)).to(args.device)
        with torch.no_grad():
            ours_1 = _timed(lambda m=model, x=images: m(x[:1]), args.repeats)[0]
            ours_8 = _timed(lambda m=model, x=images: m(x), args.repeats)[0] / 8
        line = f"  {size} px: ours batch 1 {ours_1:.3f}, ours batch 8 {ours_8:.3f}"
        if original is not None:
            orig_1 = _timed(lambda x=images, t=model.text_features: original.infer(x[:1], t), args.repeats)[0]
            line += (
                f", original batch 1 {orig_1:.3f}; speed-up {orig_1 / ours_1:.2f}x (b1), {orig_1 / ours_8:.2f}x (b8)"
            )
        print(line)


if __name__ == "__main__":
    main()
