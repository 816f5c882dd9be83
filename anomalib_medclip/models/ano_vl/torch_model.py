# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AnoVL: training-free value-wise attention maps with domain-aware state prompts, and test-time adaptation.

- Text: 7 normal and 7 anomalous state phrases of the object x 66 domain-aware templates (22 patterns x 3 domain
  phrases: "industrial photo", "industrial image", "manufacturing image"; textures use "industrial photo", "textural
  photo", "surface picture"), 462 sentences per state. Per state: the **raw** sentence embeddings are averaged, then
  L2-normalised: ``T`` ``(D, 2)``. The L2-normalised sentence embeddings ``E`` ``(924, D)`` serve the adapter.
- Image: a value-value stream runs beside the last 12 blocks (all of a ViT-B), from the input of the first of them,
  accumulating ``softmax(v v^T / sqrt(d)) v`` without MLP; the final stream's patch tokens through ``ln_post``/``proj``
  are the map features ``F``. The CLS of the unchanged stream gives the image embedding ``g``.
- Image score: ``softmax(norm(g) @ T)[anomalous]`` (temperature 1), averaged over the image and 21 augmented views
  (8 small rotations, 8 translations, horizontal flip, greyscale, 3 right-angle rotations).
- Map: ``softmax(norm(F) @ T)[anomalous]`` on the patch grid, 3x3 box filter (replicate border), bilinear upsampling
  (``align_corners=True``). No Gaussian.
- Test-time adaptation (``tta_steps > 0``): per image, a fresh ``Linear(D, 924)`` ``W`` gives
  ``A(f) = 0.5 f + 0.5 tanh(W norm(f)) @ E``; ``tta_steps`` AdamW steps (lr 1e-3) minimise the entropy of the clean
  prediction plus 0.5 x (noisy tokens ``F + N(0, 0.055^2)`` -> anomalous, clean -> normal); the map then uses
  ``A(F)``. The score is unchanged.

Everything runs for the whole batch: each image has its own adapter (stacked weights; the loss is summed over images
so each image's gradients are its own), and the seeded initialisation and noise are the same draws for every image,
so an image's result does not depend on its batch.

Paper: "AnoVL: Adapting Vision-Language Models for Unified Zero-shot Anomaly Localization",
https://arxiv.org/abs/2308.15939
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components import PromptedModel
from anomalib_medclip.prompts import domain_sentences

__all__ = ["AnoVLModel", "augmented_views"]

_ROTATIONS = tuple(math.pi * k / 16 for k in (-4, -3, -2, -1, 1, 2, 3, 4))
_SHIFTS = ((0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2), (0.1, 0.1), (-0.1, 0.1), (-0.1, -0.1), (0.1, -0.1))


def _warp(images: torch.Tensor, theta: Sequence[Sequence[float]]) -> torch.Tensor:
    matrix = torch.tensor([theta], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(matrix, [1, *images.shape[1:]], align_corners=True).expand(images.shape[0], -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def augmented_views(images: torch.Tensor) -> torch.Tensor:
    """The original's 21 augmented views of each (normalised) image, ``(21 * B, 3, S, S)``, view-major."""
    views = [_warp(images, [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0]]) for a in _ROTATIONS]
    views += [_warp(images, [[1, 0, a], [0, 1, b]]) for a, b in _SHIFTS]
    views.append(images.flip(-1))
    grey = (images * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    views.append(grey.expand_as(images))
    views += [torch.rot90(images, k, dims=(-2, -1)) for k in (1, 2, 3)]
    return torch.cat(views)


class AnoVLModel(PromptedModel):
    """Torch model of ``AnoVL``.

    Args:
        backbone: the shared CLIP wrapper (frozen).
        domains: domain phrases of the prompt templates (``None``: the original's).
        vv_from: first layer of the value-value stream (``None``: the last 12 blocks, as the original).
        augmented_score: average the image score over the 21 augmented views too (the original).
        tta_steps: test-time adaptation steps per image (0 disables it; the original's scripts: 5).
        tta_lr: AdamW learning rate of the adapter.
        tta_noise_std: standard deviation of the noise added to the tokens.
        tta_seed: seed of the adapter initialisation and of the noise.
    """

    def __init__(
        self,
        backbone: CLIPBackbone,
        domains: Sequence[str] | None = None,
        vv_from: int | None = None,
        augmented_score: bool = True,
        tta_steps: int = 5,
        tta_lr: float = 1e-3,
        tta_noise_std: float = 0.055,
        tta_seed: int = 0,
    ) -> None:
        super().__init__()
        depth = backbone.visual_depth
        self.vv_from = vv_from if vv_from is not None else max(1, depth - 11)
        if not 1 <= self.vv_from <= depth or tta_steps < 0:
            msg = f"vv_from={self.vv_from} must be in 1..{depth} and tta_steps={tta_steps} >= 0."
            raise ValueError(msg)
        self.backbone = backbone
        self.domains = tuple(domains) if domains is not None else None
        self.augmented_score = augmented_score
        self.tta_steps, self.tta_lr, self.tta_noise_std, self.tta_seed = tta_steps, tta_lr, tta_noise_std, tta_seed
        self.sentences: tuple[list[str], list[str]] = ([], [])

    # ------------------------------------------------------------------ text
    def _prepare_text(self, object_name: str) -> None:
        """The 462 normal and 462 anomalous domain-aware sentences of ``object_name``."""
        self.sentences = domain_sentences(object_name, self.domains)

    def text_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """State features ``T`` ``(D, 2)`` and the L2-normalised sentence features ``E`` ``(924, D)``.

        The backbone encodes the sentences once per device and dtype and caches them (raw, not normalised).
        """
        self._require_text()
        normal, anomalous = self.sentences
        raw = self.backbone.encode_fixed_text([*normal, *anomalous], normalize=False)
        groups = (raw[: len(normal)], raw[len(normal) :])
        text = torch.stack([F.normalize(group.mean(dim=0), dim=-1) for group in groups], dim=1)
        return text, F.normalize(raw, dim=-1)

    # ------------------------------------------------------------------ test-time adaptation
    def tta_init(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial adapter weights ``(924, D)`` and bias ``(924,)``: ``nn.Linear``'s default init, seeded."""
        rows, dim = sum(map(len, self.sentences)), self.backbone.embed_dim
        generator = torch.Generator().manual_seed(self.tta_seed)
        bound = 1 / math.sqrt(dim)  # kaiming_uniform(a=sqrt(5)) and the bias bound of nn.Linear.reset_parameters
        weight = (torch.rand(rows, dim, generator=generator) * 2 - 1) * bound
        bias = (torch.rand(rows, generator=generator) * 2 - 1) * bound
        return weight, bias

    def tta_noise(self, patches: int) -> list[torch.Tensor]:
        """Noise ``(patches, D)`` of each adaptation step, seeded (the same draws for every image)."""
        generator = torch.Generator().manual_seed(self.tta_seed + 1)
        shape = (patches, self.backbone.embed_dim)
        return [torch.randn(shape, generator=generator) * self.tta_noise_std for _ in range(self.tta_steps)]

    @staticmethod
    def _adapted(
        tokens: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sentences: torch.Tensor
    ) -> torch.Tensor:
        """``0.5 f + 0.5 tanh(W norm(f) + b) @ E`` per image: tokens ``(B, N, P, D)``, weights ``(B, 924, D)``."""
        affinity = torch.tanh(F.normalize(tokens, dim=-1) @ weight[:, None].transpose(-1, -2) + bias[:, None, None])
        return 0.5 * tokens + 0.5 * affinity @ sentences

    def adapt(self, features: torch.Tensor, text: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """Adapted map features ``(B, P, D)`` after ``tta_steps`` AdamW steps on each image's own tokens.

        Args:
            features: map features ``(B, P, D)``.
            text: state features ``T`` ``(D, 2)``.
            sentences: L2-normalised sentence features ``E`` ``(924, D)``.
        """
        with torch.inference_mode(False), torch.enable_grad():  # also inside anomalib's inference-mode test loop
            # clones: tensors made under inference mode cannot take part in autograd
            features, text = features.detach().float().clone(), text.float().clone()
            sentences = sentences.float().clone()
            weight, bias = (p.to(features.device) for p in self.tta_init())
            weight = weight.expand(len(features), -1, -1).clone().requires_grad_(True)
            bias = bias.expand(len(features), -1).clone().requires_grad_(True)
            optimizer = torch.optim.AdamW([weight, bias], lr=self.tta_lr)
            for noise in self.tta_noise(features.shape[1]):
                tokens = torch.stack([features, features + noise.to(features)], dim=1)  # (B, 2, P, D)
                probs = (F.normalize(self._adapted(tokens, weight, bias, sentences), dim=-1) @ text).softmax(dim=-1)
                clean, noisy = probs[:, 0], probs[:, 1]
                entropy = -(clean * clean.log()).sum(dim=-1).mean(dim=-1)
                hard = -(noisy[..., 1].log() + clean[..., 0].log()).mean(dim=-1)
                optimizer.zero_grad()
                (entropy + 0.5 * hard).sum().backward()  # summed: each image's adapter gets its own gradient
                optimizer.step()
            with torch.no_grad():
                return self._adapted(features[:, None], weight, bias, sentences)[:, 0]

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores ``(B,)`` and anomaly maps ``(B, 1, S, S)``."""
        text, sentences = self.text_features()
        depth = self.backbone.visual_depth
        with torch.no_grad():
            vv_layers = range(self.vv_from, depth + 1)
            encoded = self.backbone.encode_image(images, out_layers=(depth,), vv_layers=vv_layers)
            features = self.backbone.project_tokens(encoded.patch_tokens[0])  # (B, P, D), un-normalised
            pooled = [encoded.pooled]
            if self.augmented_score:  # the 21 views of each image: in chunks of the batch size (one pass if exported)
                views = augmented_views(images)
                chunks = [views] if torch.compiler.is_exporting() else views.split(len(images))
                view_pooled = torch.cat([self.backbone.encode_image(chunk).pooled for chunk in chunks])
                pooled += view_pooled.unflatten(0, (-1, images.shape[0])).unbind()  # shape[0]: the batch stays dynamic
        with torch.autocast(images.device.type, enabled=False):
            text = text.float()
            pred_score = torch.stack([(F.normalize(p.float(), dim=-1) @ text).softmax(dim=-1)[:, 1] for p in pooled])
            features = self.adapt(features, text, sentences) if self.tta_steps else features.float()
            probs = (F.normalize(features, dim=-1) @ text).softmax(dim=-1)[..., 1]
            grid = round(probs.shape[1] ** 0.5)
            probs = F.pad(probs.reshape(-1, 1, grid, grid), (1, 1, 1, 1), mode="replicate")
            size = images.shape[-1]
            anomaly_map = F.interpolate(F.avg_pool2d(probs, 3, stride=1), size=(size, size), mode="bilinear",
                                        align_corners=True)  # fmt: skip
        return InferenceBatch(pred_score=pred_score.mean(dim=0), anomaly_map=anomaly_map)
