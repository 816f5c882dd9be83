# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFA: multi-level visual feature adapters on the frozen CLIP image tower (Huang et al., CVPR 2024).

- Adapters: at each tapped layer ``l`` a segmentation and a detection adapter, each ``Linear(Dv, b) -> LeakyReLU ->
  Linear(b, Dv) -> LeakyReLU`` without biases, ``Dv`` the visual width and ``b`` the joint embedding width (the
  tokens meet the text features there): 1024 -> 768 -> 1024 for ViT-L, the original's hard-coded widths. The hidden
  states leaving layer ``l`` become ``0.8 x + 0.1 seg(x) + 0.1 det(x)`` before later layers see them (the
  backbone's ``block_hooks``); the adapters' bottleneck outputs (``b``-d, CLS first) are the seg/det patch tokens.
- Text: the fixed 420-sentence prompt ensemble (APRIL-GAN's wording, which MVFA's ``utils.py`` repeats), ``T (b, 2)``.
- Zero-shot: map = ``sum_l softmax(upsample(100 norm(seg_l) T))[abnormal]`` (bilinear, ``align_corners=True``);
  image score = ``sum_l mean_patches softmax(100 norm(det_l) T)[abnormal]``.
- Few-shot: the normal support images and 10 fixed augmentations of each (4 rotations, 4 translations with
  reflection padding, horizontal and vertical flip) fill a memory bank per layer and branch; a patch scores
  ``min over the bank of (1 - cos)``, upsampled and summed over layers. On segmentation categories the map is
  ``0.5 n(zero map) + 0.5 n(few map)`` and the image score its maximum; on classification categories the image
  score is ``0.5 n(det score) + 0.5 n(mean few det map)``, ``n`` a min-max normalisation whose ranges come from a
  calibration split (the original takes them over the test set; see ``README.md``).
- ``faithful=True`` keeps the original's memory bank with the CLS token of every support view (its test tokens
  drop it); the default drops it.

Paper: "Adapting Visual-Language Models for Generalizable Anomaly Detection in Medical Images", CVPR 2024,
https://arxiv.org/abs/2403.12570
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.components import DynamicBufferMixin
from torch import nn

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.models.components import PromptedModel, upsample_patch_values
from anomalib_medclip.models.components.official import check_state, read_official_state, save_official_file
from anomalib_medclip.models.components.text import ensemble_text_features
from anomalib_medclip.prompts import ensemble_sentences

__all__ = ["OFFICIAL_KEYS", "Adapter", "MVFAModel", "RawScores", "augment_views", "fusion_ranges"]

OFFICIAL_KEYS = ("seg_adapters", "det_adapters")
LOGIT_SCALE = 100.0  # fixed in the original
MIX = (0.8, 0.1, 0.1)  # stream, segmentation adapter, detection adapter
ROTATIONS = (-math.pi / 8, -math.pi / 16, math.pi / 16, math.pi / 8)
TRANSLATIONS = ((0.1, 0.1), (-0.1, 0.1), (-0.1, -0.1), (0.1, -0.1))  # in normalised coordinates (half-widths)
RANGE_ORDER = ("zero_map", "few_map", "det_score", "few_score")  # rows of ``score_ranges``
CHUNK = 16  # support views per tower pass when building the memory bank


def _warp(images: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    """Affine warp with bilinear sampling and reflection padding (the original's ``rot_img``/``translation_img``)."""
    theta = torch.tensor(matrix, dtype=torch.float32, device=images.device).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False).to(images.dtype)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


def augment_views(images: torch.Tensor) -> torch.Tensor:
    """The 11 views of MVFA's few-shot augmentation ``(11 K, C, H, W)``: originals, 4 rotations, 4 translations, flips.

    Deterministic (fixed angles and shifts); the order is the original's (view-major).
    """
    views = [images]
    for angle in ROTATIONS:
        theta = torch.tensor(angle, dtype=torch.float32)  # cos/sin in float32, as the original's get_rot_mat
        cos, sin = float(theta.cos()), float(theta.sin())
        views.append(_warp(images, [[cos, -sin, 0.0], [sin, cos, 0.0]]))
    views += [_warp(images, [[1.0, 0.0, a], [0.0, 1.0, b]]) for a, b in TRANSLATIONS]
    views += [images.flip(-1), images.flip(-2)]
    return torch.cat(views)


class Adapter(nn.Module):
    """MVFA's residual adapter: ``hidden = act(W1 x)``, ``out = act(W2 hidden)``; no biases (state keys as original)."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        self.fc1 = nn.Sequential(nn.Linear(width, bottleneck, bias=False), nn.LeakyReLU())
        self.fc2 = nn.Sequential(nn.Linear(bottleneck, width, bias=False), nn.LeakyReLU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bottleneck tokens and the adapter output."""
        hidden = self.fc1(x)
        return hidden, self.fc2(hidden)


class RawScores(NamedTuple):
    """Un-normalised parts of MVFA's outputs; the few-shot parts are ``None`` without a memory bank."""

    zero_map: torch.Tensor  # (B, 1, S, S)
    det_score: torch.Tensor  # (B,)
    few_map: torch.Tensor | None  # (B, 1, S, S), segmentation branch
    few_score: torch.Tensor | None  # (B,), detection branch: mean of its few-shot map


class MVFAModel(DynamicBufferMixin, PromptedModel):
    """Torch model of ``MVFA``.

    Args:
        backbone: the shared CLIP wrapper (frozen).
        layers: 1-indexed visual layers with a pair of adapters each (ascending).
        faithful: keep the CLS token of the support views in the memory bank, as the original does.
    """

    def __init__(self, backbone: CLIPBackbone, layers: Sequence[int], faithful: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.layers = tuple(layers)
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            msg = f"MVFA needs distinct adapter layers in ascending order, got {list(layers)}."
            raise ValueError(msg)
        width, bottleneck = backbone.visual_width, backbone.embed_dim
        self.seg_adapters = nn.ModuleList(Adapter(width, bottleneck) for _ in self.layers)
        self.det_adapters = nn.ModuleList(Adapter(width, bottleneck) for _ in self.layers)
        self.faithful = faithful
        self.sentences: tuple[list[str], list[str]] = ([], [])
        self.register_buffer("support_images", torch.empty(0))  # (K, 3, S, S) pre-processed normal references
        self.register_buffer("score_ranges", torch.empty(0))  # (4, 2): zero map, few map, det score, few det score
        self.register_buffer("map_image_score", torch.tensor(False))  # few-shot image score = max of the map
        self._memory: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    # ------------------------------------------------------------------ set-up
    def _prepare_text(self, object_name: str) -> None:
        """The 245 normal and 175 abnormal sentences of the ensemble for ``object_name``."""
        self.sentences = ensemble_sentences(object_name)

    def text_features(self) -> torch.Tensor:
        """Normal and abnormal text features ``(D, 2)`` of the ensemble (cached by the backbone)."""
        self._require_text()
        return ensemble_text_features(self.backbone, *self.sentences)

    def set_support(self, images: torch.Tensor) -> None:
        """Normal support images ``(K, 3, S, S)`` (pre-processed) of the few-shot memory bank."""
        self.support_images = images.detach().clone()
        self.invalidate_memory()

    def set_score_ranges(self, ranges: torch.Tensor) -> None:
        """Min-max ranges ``(4, 2)`` of the fused parts (zero map, few map, det score, few det score)."""
        self.score_ranges = ranges.detach().to(self.score_ranges.device, torch.float32)

    def invalidate_memory(self) -> None:
        """Forget the memory bank (rebuilt from the support images on next use): the adapters or support changed."""
        self._memory = None

    @property
    def few_shot(self) -> bool:
        """Whether support images are set."""
        return self.support_images.numel() > 0

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.invalidate_memory()

    # ------------------------------------------------------------------ official checkpoints
    def _adapter_state(self) -> dict[str, torch.Tensor]:
        return {
            f"{group}.{key}": value
            for group in OFFICIAL_KEYS
            for key, value in getattr(self, group).state_dict().items()
        }

    def load_official_checkpoint(self, path: str | Path) -> None:
        """Load the original's ``{"seg_adapters": ..., "det_adapters": ...}`` file strictly into the adapters."""
        state = {
            f"{group}.{key}": value
            for group in OFFICIAL_KEYS
            for key, value in read_official_state(path, method="MVFA", key=group).items()
        }
        check_state(self._adapter_state(), state, path=path, method="MVFA")
        for group in OFFICIAL_KEYS:
            prefix = f"{group}."
            getattr(self, group).load_state_dict(
                {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            )
        self.invalidate_memory()

    def save_official_checkpoint(self, path: str | Path) -> Path:
        """Write the adapters in the original's format (atomically), e.g. to run them in the original code."""
        return save_official_file({group: getattr(self, group).state_dict() for group in OFFICIAL_KEYS}, path)

    # ------------------------------------------------------------------ tower
    def _mixer(
        self, index: int, seg: list[torch.Tensor], det: list[torch.Tensor]
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        def mix(x: torch.Tensor) -> torch.Tensor:
            seg_tokens, seg_out = self.seg_adapters[index](x)
            det_tokens, det_out = self.det_adapters[index](x)
            seg.append(seg_tokens)
            det.append(det_tokens)
            return MIX[0] * x + MIX[1] * seg_out + MIX[2] * det_out

        return mix

    def encode(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Segmentation and detection tokens ``[(B, 1 + P, b)]`` per adapter layer (CLS first).

        Images up to one patch larger than the tower's size are cropped to it: a stride-``p`` patch convolution
        never sees the remainder (the original runs ViT-L/14 on 240 px images, i.e. on their top-left 238 px).
        """
        size = self.backbone.image_size
        if 0 < images.shape[-1] - size < self.backbone.patch_size:
            images = images[..., :size, :size]
        seg: list[torch.Tensor] = []
        det: list[torch.Tensor] = []
        hooks = {layer: self._mixer(index, seg, det) for index, layer in enumerate(self.layers)}
        self.backbone.encode_image(images, block_hooks=hooks)
        return seg, det

    # ------------------------------------------------------------------ heads
    @staticmethod
    def seg_probabilities(seg: Sequence[torch.Tensor], text: torch.Tensor, size: int) -> list[torch.Tensor]:
        """Per layer, normal/abnormal probabilities ``(B, 2, size, size)`` from the segmentation tokens."""
        probs = []
        for tokens in seg:
            logits = LOGIT_SCALE * F.normalize(tokens[:, 1:], dim=-1) @ text
            probs.append(upsample_patch_values(logits, size, align_corners=True).softmax(dim=1))
        return probs

    @staticmethod
    def det_scores(det: Sequence[torch.Tensor], text: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, the mean abnormal probability of the detection tokens ``(B,)``."""
        return [(LOGIT_SCALE * F.normalize(t[:, 1:], dim=-1) @ text).softmax(dim=-1)[..., 1].mean(dim=-1) for t in det]

    def forward_train(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer segmentation probabilities ``[(B, 2, S, S)]`` and detection scores ``[(B,)]`` (for the losses)."""
        seg, det = self.encode(images)
        text = self.text_features()
        return self.seg_probabilities(seg, text, images.shape[-1]), self.det_scores(det, text)

    # ------------------------------------------------------------------ few-shot
    def memory(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Normalised memory banks ``[(M, b)]`` per layer, segmentation and detection (built once per adapter state)."""
        if not self.few_shot:
            msg = "No memory bank: call `set_support(normal_images)` first."
            raise RuntimeError(msg)
        device = self.support_images.device
        if self._memory is None or self._memory[0][0].device != device:
            keep = slice(0, None) if self.faithful else slice(1, None)  # faithful: with the CLS token (original)
            seg_parts: list[list[torch.Tensor]] = [[] for _ in self.layers]
            det_parts: list[list[torch.Tensor]] = [[] for _ in self.layers]
            with torch.inference_mode(False), torch.no_grad():  # usable later outside inference mode
                views = augment_views(self.support_images.clone())
                for chunk in views.split(CHUNK):
                    seg, det = self.encode(chunk)
                    for parts, tokens in ((seg_parts, seg), (det_parts, det)):
                        for part, layer_tokens in zip(parts, tokens, strict=True):
                            part.append(layer_tokens[:, keep].float().reshape(-1, layer_tokens.shape[-1]))
                self._memory = tuple(  # type: ignore[assignment]
                    [F.normalize(torch.cat(part), dim=-1, eps=1e-8) for part in parts]
                    for parts in (seg_parts, det_parts)
                )
        return self._memory  # type: ignore[return-value]

    @staticmethod
    def few_shot_map(tokens: Sequence[torch.Tensor], memory: Sequence[torch.Tensor], size: int) -> torch.Tensor:
        """``sum_l upsample(min over the bank of (1 - cos))`` ``(B, 1, size, size)`` (CLS of the tokens dropped)."""
        total = None
        for layer_tokens, bank in zip(tokens, memory, strict=True):
            # one image at a time bounds the (P, M) similarity matrix
            patches = F.normalize(layer_tokens[:, 1:].float(), dim=-1, eps=1e-8)
            distance = torch.stack([1 - (image @ bank.T).amax(dim=-1) for image in patches])
            upsampled = upsample_patch_values(distance.unsqueeze(-1), size, align_corners=True)
            total = upsampled if total is None else total + upsampled
        return total

    # ------------------------------------------------------------------ forward
    def raw_scores(self, images: torch.Tensor) -> RawScores:
        """Un-normalised zero-shot map and score, and the few-shot part the image score uses (when a bank is set)."""
        seg, det = self.encode(images)
        with torch.autocast(images.device.type, enabled=False):  # the light heads in float32 under mixed precision
            seg, det = [t.float() for t in seg], [t.float() for t in det]
            text = self.text_features().float()
            size = images.shape[-1]
            zero_map = torch.stack([p[:, 1] for p in self.seg_probabilities(seg, text, size)]).sum(dim=0).unsqueeze(1)
            det_score = torch.stack(self.det_scores(det, text)).sum(dim=0)
            few_map = few_score = None
            if self.few_shot:
                seg_memory, det_memory = self.memory()
                if bool(self.map_image_score):
                    few_map = self.few_shot_map(seg, seg_memory, size)
                else:
                    few_score = self.few_shot_map(det, det_memory, size).mean(dim=(1, 2, 3))
        return RawScores(zero_map, det_score, few_map, few_score)

    def fuse(self, raw: RawScores) -> InferenceBatch:
        """Image scores and maps from the raw parts: zero-shot as they are, few-shot fused (see the module docs)."""
        if raw.few_map is None and raw.few_score is None:
            return InferenceBatch(pred_score=raw.det_score, anomaly_map=raw.zero_map)
        ranges = self.score_ranges if self.score_ranges.numel() else torch.tensor([[0.0, 1.0]] * 4)
        ranges = ranges.to(raw.zero_map.device)

        def normalised(value: torch.Tensor, index: int) -> torch.Tensor:
            low, high = ranges[index]
            return (value - low) / (high - low)

        if raw.few_map is not None:
            anomaly_map = 0.5 * normalised(raw.zero_map, 0) + 0.5 * normalised(raw.few_map, 1)
            return InferenceBatch(pred_score=anomaly_map.amax(dim=(1, 2, 3)), anomaly_map=anomaly_map)
        pred_score = 0.5 * normalised(raw.det_score, 2) + 0.5 * normalised(raw.few_score, 3)
        return InferenceBatch(pred_score=pred_score, anomaly_map=raw.zero_map)

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores ``(B,)`` and anomaly maps ``(B, 1, S, S)``."""
        return self.fuse(self.raw_scores(images))


def fusion_ranges(parts: Sequence[RawScores]) -> torch.Tensor:
    """Min-max ranges ``(4, 2)`` of the raw parts over a calibration split (``[0, 1]`` for a part not computed).

    Raises:
        ValueError: a part is constant over the split (its normalisation would divide by zero).
    """
    rows = []
    for name in RANGE_ORDER:
        values = [getattr(p, name) for p in parts if getattr(p, name) is not None]
        if not values:
            rows.append(torch.tensor([0.0, 1.0]))
            continue
        flat = torch.cat([v.flatten() for v in values]).float()
        low, high = flat.min(), flat.max()
        if not high > low:
            msg = (
                f"Cannot min-max normalise MVFA's {name}: it is {float(high):.6g} on all {len(flat)} calibration values"
            )
            msg += " (use a calibration split with more varied images)."
            raise ValueError(msg)
        rows.append(torch.stack([low, high]).cpu())
    return torch.stack(rows)
