# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AA-CLIP: anomaly-aware text anchors and visual residual adapters on a frozen CLIP.

- Residual adapters (``Linear`` without bias + LeakyReLU) after the first text layers (3 of 12) and the first image
  layers (6 of 24): ``x <- w * a * |x| / |a| + (1 - w) * x`` with ``a = adapter(x)`` rescaled to the norm of ``x``,
  ``w = 0.1``; they change the stream that later layers see (backbone ``block_hooks``).
- Text: the ``ln_final`` end-of-text state goes through the method's own projection (``Linear`` + LeakyReLU, text
  width -> joint dimension) instead of CLIP's; the state's sentences are L2-normalised, averaged and normalised
  again: anchors ``T`` ``(2, D)`` (normal, abnormal).
- Image: tokens of the ``levels`` (quarters of the tower) after ``ln_post`` go through one segmentation projection
  per level; the detection token is the patch mean of the normalised detection projection of the last level.
- Map: per level ``100 * seg @ T^T`` on the patch grid, ``(abnormal + 1 - normal) / 2``, Gaussian blur (kernel 9,
  sigma 1.5: the original's "Medical" domain), bilinear upsampling (``align_corners=True``), summed over levels.
  Image score: the max of the map (the original's rule for medical data).
- Stage 1 (text anchors) trains against a frozen "teacher": CLIP whose blocks from ``teacher_from`` on (the
  original's ``DPAM_layer=20``: layers 6..24) run a value-only attention (CLIP Surgery), patch tokens projected with
  ``ln_post``/``proj``, normalised, plus the normalised CLIP image embedding.

Paper: "AA-CLIP: Enhancing Zero-shot Anomaly Detection via Anomaly-Aware CLIP", https://arxiv.org/abs/2503.06661
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.components import GaussianBlur2d
from torch import nn

from anomalib_medclip.backbones import CLIPBackbone
from anomalib_medclip.backbones.clip import BlockHook
from anomalib_medclip.models.components import PromptedModel, quarter_layers, upsample_patch_values
from anomalib_medclip.models.components.official import check_state, read_official_state
from anomalib_medclip.prompts import aa_clip_sentences
from anomalib_medclip.utils import write_atomic

__all__ = ["IMAGE_KEY", "LOGIT_SCALE", "TEXT_KEY", "AACLIPModel"]

TEXT_KEY, IMAGE_KEY = "text_adapter", "image_adapter"
LOGIT_SCALE = 100.0  # fixed in the original's similarity maps
TEXT_FILE = "text_adapter.pth"


class Projection(nn.Module):
    """``Linear`` without bias, optionally followed by LeakyReLU; the attribute is named ``fc`` as in the original."""

    def __init__(self, c_in: int, c_out: int, leaky_relu: bool) -> None:
        super().__init__()
        linear = nn.Linear(c_in, c_out, bias=False)
        self.fc = nn.Sequential(linear, nn.LeakyReLU()) if leaky_relu else linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project the last dimension."""
        return self.fc(x)


def residual(adapter: nn.Module, weight: float, x: torch.Tensor) -> torch.Tensor:
    """``weight * a * |x| / |a| + (1 - weight) * x`` with ``a = adapter(x)`` (norms over the channel dimension)."""
    out = adapter(x)
    out = out * x.norm(dim=-1, keepdim=True) / out.norm(dim=-1, keepdim=True)
    return weight * out + (1 - weight) * x


class AACLIPModel(PromptedModel):
    """Torch model of ``AACLIP``.

    Args:
        backbone: the shared CLIP wrapper (frozen).
        levels: 1-indexed visual layers of the map (``None``: quarters of the tower, 6/12/18/24 for ViT-L).
        image_adapt_until: image layers ``1..n`` with residual adapters (``None``: a quarter of the tower, 6 of 24).
        text_adapt_until: text layers ``1..n`` with residual adapters (``None``: a quarter, 3 of 12).
        image_adapt_weight, text_adapt_weight: residual weights ``w`` (0.1).
        proj_relu: LeakyReLU after the segmentation/detection projections (the original's ``--relu``, off in its
            scripts and released log).
        adapt_text: text through the adapters and the method's projection; ``False`` = plain CLIP text features (what
            the original uses when no text adapter was trained).
        teacher_from: first layer of the value-only teacher of stage 1 (``None``: a quarter of the tower).
        teacher_batch_mixing: the original's teacher attends across the images of a batch at each position (its
            value-only attention reads a sequence-first tensor as batch-first); ``True`` reproduces that, ``False``
            (default) keeps each image to itself, which equals the original at batch size 1.
        smoothing_kernel, smoothing_sigma: Gaussian blur of the patch maps (9 and 1.5: the original's "Medical").
    """

    def __init__(
        self,
        backbone: CLIPBackbone,
        levels: Sequence[int] | None = None,
        image_adapt_until: int | None = None,
        text_adapt_until: int | None = None,
        image_adapt_weight: float = 0.1,
        text_adapt_weight: float = 0.1,
        proj_relu: bool = False,
        adapt_text: bool = True,
        teacher_from: int | None = None,
        teacher_batch_mixing: bool = False,
        smoothing_kernel: int = 9,
        smoothing_sigma: float = 1.5,
    ) -> None:
        super().__init__()
        depth, text_depth = backbone.visual_depth, backbone.text_depth
        self.levels = tuple(levels) if levels is not None else quarter_layers(depth)
        self.image_adapt_until = image_adapt_until if image_adapt_until is not None else max(1, depth // 4)
        self.text_adapt_until = text_adapt_until if text_adapt_until is not None else max(1, text_depth // 4)
        self.teacher_from = teacher_from if teacher_from is not None else max(1, depth // 4)
        checks = {
            "levels": bool(self.levels) and all(1 <= level <= depth for level in self.levels),
            "image_adapt_until": 0 <= self.image_adapt_until <= depth,
            "text_adapt_until": 0 <= self.text_adapt_until <= text_depth,
            "teacher_from": 1 <= self.teacher_from <= depth,
        }
        if bad := [name for name, ok in checks.items() if not ok]:
            msg = (
                f"AA-CLIP settings {bad} out of range for '{backbone.info.name}' ({depth} image and {text_depth} text "
                f"layers): levels={self.levels}, image_adapt_until={self.image_adapt_until}, text_adapt_until="
                f"{self.text_adapt_until}, teacher_from={self.teacher_from}."
            )
            raise ValueError(msg)
        if smoothing_kernel % 2 == 0 or smoothing_kernel // 2 >= backbone.grid_size:
            msg = (
                f"smoothing_kernel={smoothing_kernel} must be odd and its radius smaller than the "
                f"{backbone.grid_size}x{backbone.grid_size} patch grid of '{backbone.info.name}' at "
                f"{backbone.image_size} px (reflect padding)."
            )
            raise ValueError(msg)
        self.backbone = backbone
        self.image_adapt_weight, self.text_adapt_weight = image_adapt_weight, text_adapt_weight
        self.adapt_text, self.teacher_batch_mixing = adapt_text, teacher_batch_mixing
        width, text_width, dim = backbone.visual_width, backbone.text_width, backbone.embed_dim
        self.image_adapter = nn.ModuleDict(
            {
                "layer_adapters": nn.ModuleList(
                    Projection(width, width, leaky_relu=True) for _ in range(self.image_adapt_until)
                ),
                "seg_proj": nn.ModuleList(Projection(width, dim, proj_relu) for _ in self.levels),
                "det_proj": Projection(width, dim, proj_relu),
            }
        )
        self.text_adapter = nn.ModuleList(
            [Projection(text_width, text_width, leaky_relu=True) for _ in range(self.text_adapt_until)]
            + [Projection(text_width, dim, leaky_relu=True)]
        )
        for p in (*self.image_adapter.parameters(), *self.text_adapter.parameters()):
            nn.init.xavier_uniform_(p)
        self.blur = GaussianBlur2d(sigma=smoothing_sigma, channels=1, kernel_size=smoothing_kernel)
        self.register_buffer("tokens", torch.empty(0, dtype=torch.long), persistent=False)
        self.n_normal = 0
        self._cached_text: torch.Tensor | None = None

    def _prepare_text(self, object_name: str) -> None:
        """Tokenise the normal and abnormal sentences for ``object_name``."""
        normal, abnormal = aa_clip_sentences(object_name)
        self.tokens = self.backbone.tokenize([*normal, *abnormal])
        self.n_normal = len(normal)
        self._cached_text = None

    def train(self, mode: bool = True) -> AACLIPModel:
        """Forget cached text anchors: the text adapters may change while training."""
        self._cached_text = None
        return super().train(mode)

    # ------------------------------------------------------------------ stages
    def set_stage(self, stage: int) -> None:
        """Make the text adapters (stage 1) or the image adapters (stage 2) the trainable parameters."""
        if stage not in (1, 2):
            msg = f"AA-CLIP has training stages 1 (text anchors) and 2 (image adapters), not {stage}."
            raise ValueError(msg)
        self.text_adapter.requires_grad_(stage == 1)
        self.image_adapter.requires_grad_(stage == 2)
        self._cached_text = None

    # ------------------------------------------------------------------ text
    def _text_hooks(self) -> dict[int, BlockHook]:
        return {
            layer: lambda x, a=adapter: residual(a, self.text_adapt_weight, x)
            for layer, adapter in enumerate(self.text_adapter[:-1], start=1)
        }

    def _sentence_features(self) -> torch.Tensor:
        """Normalised features ``(N, D)`` of all sentences."""
        if not self.adapt_text:
            normal, abnormal = aa_clip_sentences(self.object_name)
            return self.backbone.encode_fixed_text([*normal, *abnormal], normalize=True)
        states = self.backbone.encode_text(self.tokens, block_hooks=self._text_hooks(), project=False)
        return F.normalize(self.text_adapter[-1](states), dim=-1)

    def text_features(self) -> torch.Tensor:
        """Anchors ``(2, D)`` (normal, abnormal); cached while the text adapters are frozen or in eval mode."""
        self._require_text()
        frozen = not any(p.requires_grad for p in self.text_adapter.parameters())
        if (frozen or not self.training) and self._cached_text is not None:
            return self._cached_text
        features = self._sentence_features()
        anchors = [features[: self.n_normal].mean(dim=0), features[self.n_normal :].mean(dim=0)]
        text = torch.stack([F.normalize(a, dim=-1) for a in anchors])
        if frozen or not self.training:
            self._cached_text = text = text.detach()
        return text

    # ------------------------------------------------------------------ image
    def encode_images(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Normalised segmentation tokens ``[(B, P, D)]`` per level and the detection token ``(B, D)``."""
        adapters = self.image_adapter["layer_adapters"]
        hooks = {
            layer: lambda x, a=adapter: residual(a, self.image_adapt_weight, x)
            for layer, adapter in enumerate(adapters, start=1)
        }
        features = self.backbone.encode_image(images, out_layers=self.levels, block_hooks=hooks)
        tokens = [self.backbone.post_norm(t) for t in features.patch_tokens]
        seg = [F.normalize(proj(t), dim=-1) for proj, t in zip(self.image_adapter["seg_proj"], tokens, strict=True)]
        det = F.normalize(self.image_adapter["det_proj"](tokens[-1]), dim=-1).mean(dim=1)
        return seg, det

    def _value_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The backbone's value-only block (softmax over one key: CLIP Surgery at batch 1), batch-mixed or not."""
        return self.backbone.value_only_block(block, x, batch_mixing=self.teacher_batch_mixing)

    @torch.no_grad()
    def teacher_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Stage-1 patch features ``(B, P, D)`` of the last level: normalised teacher tokens + normalised image."""
        overrides = dict.fromkeys(range(self.teacher_from, self.backbone.visual_depth + 1), self._value_block)
        teacher = self.backbone.encode_image(images, out_layers=self.levels[-1:], block_overrides=overrides)
        image = F.normalize(self.backbone.encode_image(images).pooled, dim=-1)
        return F.normalize(self.backbone.project_tokens(teacher.patch_tokens[0]), dim=-1) + image[:, None]

    # ------------------------------------------------------------------ outputs
    @staticmethod
    def probabilities(tokens: torch.Tensor, text: torch.Tensor, size: int) -> torch.Tensor:
        """Training maps: ``softmax`` over (normal, abnormal) of upsampled ``100 * tokens @ T^T``, ``(B, 2, S, S)``."""
        return upsample_patch_values(LOGIT_SCALE * tokens @ text.T, size, align_corners=True).softmax(dim=1)

    def text_stage_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: probabilities ``(B, 2, S, S)`` of the teacher tokens against the anchors, and the anchors."""
        text = self.text_features()
        return self.probabilities(self.teacher_tokens(images), text, images.shape[-1]), text

    def image_stage_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage 2: detection logits ``det @ T^T`` ``(B, 2)`` and per-level probabilities ``[(B, 2, S, S)]``."""
        text = self.text_features()
        seg, det = self.encode_images(images)
        return det @ text.T, [self.probabilities(t, text, images.shape[-1]) for t in seg]

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Image scores (max of the map) ``(B,)`` and anomaly maps ``(B, 1, S, S)``."""
        seg, _ = self.encode_images(images)
        with torch.autocast(images.device.type, enabled=False):
            text = self.text_features().float()
            size, total = images.shape[-1], None
            for tokens in seg:
                logits = LOGIT_SCALE * tokens.float() @ text.T
                grid = upsample_patch_values(logits, round(logits.shape[1] ** 0.5), align_corners=True)
                level = self.blur((grid[:, 1:] + 1 - grid[:, :1]) / 2)
                level = F.interpolate(level, size=(size, size), mode="bilinear", align_corners=True)
                total = level if total is None else total + level
            return InferenceBatch(pred_score=total.amax(dim=(1, 2, 3)), anomaly_map=total)

    # ------------------------------------------------------------------ official checkpoints
    def load_official_checkpoint(self, image_path: str | Path, text_path: str | Path | None = None) -> None:
        """Load the original's ``{"image_adapter": ...}`` file and, when given, its ``{"text_adapter": ...}`` file.

        Both loads are strict (missing, unexpected and mis-shaped keys are named). Without ``text_path`` the text
        adapters keep their state (e.g. plain CLIP text with ``adapt_text=False``).
        """
        pairs = [(self.image_adapter, image_path, IMAGE_KEY)]
        if text_path is not None:
            pairs.append((self.text_adapter, text_path, TEXT_KEY))
        for module, path, key in pairs:
            state = read_official_state(path, method="AA-CLIP", key=key)
            check_state(module.state_dict(), state, path=path, method="AA-CLIP")
            module.load_state_dict(state)
        self._cached_text = None

    def save_official_checkpoint(self, path: str | Path, epoch: int = 0) -> Path:
        """Write the image adapters to ``path`` and the text adapters to ``text_adapter.pth`` beside it.

        The original's format (``train.py`` names them ``image_adapter_{epoch}.pth`` and ``text_adapter.pth`` in one
        folder; its ``test.py`` reads every ``image_adapter_*.pth`` there): ``{"epoch", "image_adapter"}`` and
        ``{"epoch", "text_adapter"}``. Optimiser states are not written (its ``train.py`` needs them only to resume).
        Returns ``path``, what ``official_checkpoint=`` takes.
        """
        path = Path(path).expanduser()
        for module, key, target in (
            (self.text_adapter, TEXT_KEY, path.parent / TEXT_FILE),
            (self.image_adapter, IMAGE_KEY, path),
        ):
            content = {"epoch": epoch, key: {k: v.detach().cpu() for k, v in module.state_dict().items()}}
            write_atomic(target, lambda tmp, c=content: torch.save(c, tmp))
        return path
