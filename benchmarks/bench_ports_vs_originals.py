# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnomalyCLIP, AdaCLIP and AnoVL ports vs the original code: inference (and AdaCLIP training) speed, in one run.

Each method's original and port get the same random open_clip ViT-B-16 state dict, the same learnable tensors (the
original's module saved in its checkpoint format and loaded through ``official_checkpoint``) and the same random
images, fp32, on one device. Timings are medians after a warm-up run:

- AnomalyCLIP: inference s/image at each ``--sizes`` (original at batch 1, its scoring breaks at batch > 1; ours at
  batch 1 and 8);
- AdaCLIP: inference s/image at 224 px with HSF (original batch 1, the only size it runs; ours batch 1 and 8) and
  training samples/s (original batch 1 vs ours batch 8: forward, the original's loss, backward, AdamW step);
- AnoVL: text set-up (924 sentences) and inference s/image with its 22-view score and 5 TTA steps (original batch 1,
  ours batch 1 and 8).

Targets (issue 7): AdaCLIP inference >= 3x and training samples/s >= 4x the original; AnomalyCLIP at least as fast at
224 px and >= 1.3x at 518 px (a GPU target: fused attention instead of explicit attention maps). The originals are
read from ``$MEDCLIP_ORIGINALS`` (see ``tests/README.md``); a method whose original is absent is skipped.

Usage:
    MEDCLIP_ORIGINALS=/path/to/originals python benchmarks/bench_ports_vs_originals.py [--methods AdaCLIP] \
        [--sizes 224 512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from _shared import DEVICE, import_original, timed

from anomalib_medclip import AdaCLIP, AnomalyCLIP
from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.ano_vl import AnoVLModel
from anomalib_medclip.models.components.losses import MapLoss, focal_loss


def _images(n: int, size: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(2)).to(DEVICE)


def _report(name: str, original: float, ours_1: float, ours_8: float, unit: str = "s/image") -> None:
    print(f"  {name}: original {original:.3f}, ours batch 1 {ours_1:.3f}, ours batch 8 {ours_8:.3f} {unit}; "
          f"speed-up {original / ours_1:.2f}x (b1), {original / ours_8:.2f}x (b8)")  # fmt: skip


def bench_anomaly_clip(root: Path, weights: Path, state: dict, sizes: list[int], repeats: int) -> None:
    """Inference of AnomalyCLIP (DPAM on the last 11 blocks, map layer 12) against the original."""
    lib, build_model, prompts = import_original(
        root, "AnomalyCLIP_lib", "AnomalyCLIP_lib.build_model", "prompt_ensemble"
    )
    design = {"Prompt_length": 12, "learnabel_text_embedding_depth": 9, "learnabel_text_embedding_length": 4}
    print("\nAnomalyCLIP inference (score + map, layer 12, sigma 4 smoothing on both sides):")
    for size in sizes:
        model = build_model.build_model("ViT-B-16", dict(state), design).eval()
        torch.manual_seed(1)
        learner = prompts.AnomalyCLIP_PromptLearner(model, design)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"prompt_learner": learner.state_dict()}, Path(tmp) / "p.pth")
            ours = AnomalyCLIP(
                backbone="ViT-B-16", pretrained=str(weights), image_size=size, activation="quick_gelu", vv_from=2,
                official_checkpoint=str(Path(tmp) / "p.pth"),
            ).model.to(DEVICE).eval()  # fmt: skip
        model.visual.DAPM_replace(DPAM_layer=12)
        model.to(DEVICE)
        with torch.no_grad():
            p, tok, deep = learner.to(DEVICE)(cls_id=None)
            text = F.normalize(
                torch.stack(torch.chunk(model.encode_text_learn(p, tok, deep).float(), 2), dim=1), dim=-1
            )

        def original(image: torch.Tensor, model=model, text=text, size=size, smoothing=ours.smoothing) -> None:
            with torch.no_grad():
                features, patches = model.encode_image(image, [12], DPAM_layer=12)
                (F.normalize(features, dim=-1) @ text.permute(0, 2, 1) / 0.07).softmax(-1)
                similarity, _ = lib.compute_similarity(F.normalize(patches[0], dim=-1), text[0])
                smoothing(lib.get_similarity_map(similarity[:, 1:, :], size)[..., 1][:, None])

        images = _images(8, size)
        with torch.no_grad():
            ours_1 = timed(lambda x=images, m=ours: m(x[:1]), repeats)
            ours_8 = timed(lambda x=images, m=ours: m(x), repeats) / 8
        _report(f"{size} px", timed(lambda x=images, f=original: f(x[:1]), repeats), ours_1, ours_8)


def _ada_original(root: Path, state: dict) -> tuple[torch.nn.Module, types.ModuleType]:
    package = types.ModuleType("method")
    package.__path__ = [str(root / "method")]
    sys.modules["method"] = package
    adaclip, clip_model = (importlib.import_module(f"method.{n}") for n in ("adaclip", "clip_model"))
    clip = clip_model.CLIP(**json.loads((root / "model_configs" / "ViT-B-16.json").read_text()))
    clip.load_state_dict(state)
    torch.manual_seed(1)
    model = adaclip.AdaCLIP(
        freeze_clip=clip, text_channel=512, visual_channel=768, prompting_length=5, prompting_depth=4,
        prompting_branch="VL", prompting_type="SD", use_hsf=True, k_clusters=20, output_layers=[3, 6, 9, 12],
        device=DEVICE, image_size=224,
    ).to(DEVICE)  # fmt: skip
    from sklearn.cluster import KMeans

    model.HSF.cluster_performer = KMeans(n_clusters=20, n_init="auto", random_state=0)
    return model, adaclip


def bench_ada_clip(root: Path, weights: Path, state: dict, repeats: int) -> None:
    """AdaCLIP inference and training against the original (224 px, HSF on)."""
    model, _ = _ada_original(root, state)
    forward = type(model).forward.__wrapped__  # the original without its CUDA autocast decorator (fp32 parity)
    learnable = ("text_prompter", "visual_prompter", "patch_token_layer", "cls_token_layer", "dynamic_")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ada.pth"
        torch.save({f"clip_model.{k}": v for k, v in model.state_dict().items() if k.startswith(learnable)}, path)
        ours = AdaCLIP(backbone="ViT-B-16", pretrained=str(weights), image_size=224, official_checkpoint=str(path),
                       object_name="candle")  # fmt: skip
    ours = ours.model.to(DEVICE)
    ours.setup_text("candle")
    images = _images(8, 224)
    print("\nAdaCLIP at 224 px, HSF on:")
    model.eval(), ours.eval()
    with torch.no_grad():
        original = timed(lambda: forward(model, images[:1], ["candle"], aggregation=True), repeats)
        ours_1 = timed(lambda: ours(images[:1]), repeats)
        ours_8 = timed(lambda: ours(images), repeats) / 8
    _report("inference", original, ours_1, ours_8)

    mask = torch.zeros(8, 224, 224, device=DEVICE)
    mask[4:, 60:120, 60:120] = 1
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1], device=DEVICE)
    loss_fn = MapLoss.reference(normal_dice=True)
    params = [p for n, p in model.named_parameters() if any(k in n for k in learnable)]
    optimizer = torch.optim.AdamW(params, lr=1e-2, betas=(0.5, 0.999))
    ours_optimizer = torch.optim.AdamW([p for n, p in ours.named_parameters() if not n.startswith("backbone.")],
                                       lr=1e-2, betas=(0.5, 0.999))  # fmt: skip

    def step(forward_train: Callable, opt: torch.optim.Optimizer, index: slice) -> None:
        probs, maps = forward_train(images[index])
        loss = focal_loss(probs, labels[index]) + sum(loss_fn(m, mask[index]) for m in maps)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train(), ours.train()

    # The original trains under CUDA fp16 autocast only: in fp32 its in-place normalisations of the projected tokens
    # and of the sentence features break autograd. For timing, those divisions are made out of place (same values).
    def project(self, image_features: torch.Tensor, patch_tokens: list) -> tuple:
        patches = [F.normalize(t, dim=-1) for t in self.patch_token_layer(patch_tokens)]
        return F.normalize(self.cls_token_layer(image_features)[0], dim=-1), patches

    def encode_text(self, clip: torch.nn.Module, text: str, device: str) -> torch.Tensor:
        groups = [
            [t.format(s.format(text)) for s in states for t in self.prompt_templates] for states in self.prompt_state
        ]
        embeddings = [F.normalize(clip.encode_text(self.tokenize(g).to(device)), dim=-1).mean(0) for g in groups]
        return torch.stack([F.normalize(e, dim=-1) for e in embeddings], dim=1)

    model.proj_visual_tokens = types.MethodType(project, model)
    model.text_embedding_layer.encode_text = types.MethodType(encode_text, model.text_embedding_layer)

    def original_train(x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps, probs = forward(model, x, ["candle"], aggregation=False)
        return probs, maps

    original = timed(lambda: step(original_train, optimizer, slice(4, 5)), repeats)
    ours_8 = timed(lambda: step(ours.forward_train, ours_optimizer, slice(0, 8)), repeats)
    print(f"  training: original batch 1 {1 / original:.2f} samples/s, ours batch 8 {8 / ours_8:.2f} samples/s; "
          f"speed-up {original * 8 / ours_8:.2f}x")  # fmt: skip


def bench_ano_vl(root: Path, weights: Path, state: dict, repeats: int) -> None:
    """AnoVL text set-up and inference (22-view score, 5 TTA steps) against the original."""
    spec = importlib.util.spec_from_file_location("anovl_open_clip", root / "open_clip" / "__init__.py",
                                                  submodule_search_locations=[str(root / "open_clip")])  # fmt: skip
    vendored = importlib.util.module_from_spec(spec)
    sys.modules["anovl_open_clip"] = vendored
    spec.loader.exec_module(vendored)
    sys.modules.setdefault("tabulate", types.SimpleNamespace(tabulate=lambda *_args, **_kwargs: ""))
    model_py, ensemble, utils, vl_test = import_original(root, "model", "prompt_ensemble", "utils", "vl_test")
    model = vendored.create_model("ViT-B-16", 224, pretrained=None)
    model.load_state_dict(state)
    model.to(DEVICE).eval()
    start = time.perf_counter()
    with torch.no_grad():
        tokenizer = vendored.get_tokenizer("ViT-B-16")
        text, sentences = ensemble.encode_text_with_prompt_ensemble(model, ["bottle"], tokenizer, DEVICE)
    original_text = time.perf_counter() - start
    ours = AnoVLModel(CLIPBackbone("ViT-B-16", str(weights), image_size=224).to(DEVICE)).eval()
    start = time.perf_counter()
    ours.setup_text("bottle")
    print(
        f"\nAnoVL text set-up (924 sentences): original {original_text:.1f} s, ours {time.perf_counter() - start:.1f} s"
    )
    text, linear = text["bottle"][None], model_py.LinearLayer(768, 512, 4, "ViT-B-16", model)
    adapter = model_py.TextAdapter(sentences["bottle"]).to(DEVICE)
    optimizer = torch.optim.AdamW(adapter.parameters(), 1e-3)

    def original(image: torch.Tensor) -> None:
        views = utils.aug(image.cpu()).to(DEVICE)
        adapter.apply(vl_test.weight_reset)
        with torch.no_grad():
            (F.normalize(model.encode_image(views, [3, 6, 9, 12])[0], dim=-1) @ text[0]).softmax(-1).mean(0)
            tokens = vl_test.resize_tokens(linear(model.encode_image(image, [3, 6, 9, 12])[1])[6])
        for _ in range(5):
            probs = (F.normalize(adapter(tokens), dim=-1) @ text).softmax(-1)
            optimizer.zero_grad()
            vl_test.loss_func(probs).backward()
            optimizer.step()
        with torch.no_grad():
            (F.normalize(adapter(tokens, is_test=True), dim=-1) @ text).softmax(-1)

    images = _images(8, 224)
    print("AnoVL inference (22-view score, map with 5 TTA steps):")
    ours_1 = timed(lambda: ours(images[:1]), repeats)
    ours_8 = timed(lambda: ours(images), repeats) / 8
    _report("224 px", timed(lambda: original(images[:1]), repeats), ours_1, ours_8)


def main() -> None:
    """Run the selected benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["AnomalyCLIP", "AdaCLIP", "AnoVL"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512], help="AnomalyCLIP input sizes")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"device {DEVICE}, torch threads {torch.get_num_threads()}, ViT-B-16 random weights, fp32")
    originals = Path(os.environ.get("MEDCLIP_ORIGINALS", "/nonexistent"))
    repos = {"AnomalyCLIP": "zqhang+AnomalyCLIP", "AdaCLIP": "caoyunkang+AdaCLIP", "AnoVL": "hq-deng+AnoVL"}
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-16", pretrained=None).state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vit_b_16.pt"
        torch.save(state, weights)
        for method in args.methods:
            root = originals / repos[method]
            if not root.is_dir():
                print(f"\n{method}: {root} not found (set MEDCLIP_ORIGINALS, see tests/README.md): skipped.")
            elif method == "AnomalyCLIP":
                bench_anomaly_clip(root, weights, dict(state), args.sizes, args.repeats)  # QuickGELU on both sides
            elif method == "AdaCLIP":
                bench_ada_clip(root, weights, dict(state), args.repeats)
            else:
                bench_ano_vl(root, weights, dict(state), args.repeats)


if __name__ == "__main__":
    main()
