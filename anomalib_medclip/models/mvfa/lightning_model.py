# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""MVFA (CVPR 2024): CLIP with multi-level seg/det adapters, zero-shot and few-shot, the BMAD reference method.

- Without ``official_checkpoint`` the adapters are trained on the datamodule's training split: focal + Dice on the
  segmentation maps (batches with masks) plus BCE on the detection scores, summed over the adapter layers, Adam
  lr 1e-3, betas (0.5, 0.999) for each adapter family. The original's zero-shot protocol is
  ``MedBMAD(leave_one_out=True)`` (the other categories' test images), its few-shot one ``MedBMAD(shots=K)``.
- Few-shot (``few_shot=None``: when the datamodule has ``shots``): the normal training images are the support set
  (memory bank of 11 augmented views each), every training batch is trained with its 11 views, and the fused image
  score is normalised with ranges from the validation split (an extra pass at the start of each validation).
- Model selection: ``selection="validation"`` (default) keeps the epoch with the best validation image AUROC (+ pixel
  AUROC when the split has masks), the original's criterion on the validation split; ``"last"`` keeps the last
  epoch; ``"test_set"`` is the original's choice (best epoch on the test split), reported as test-set-selected by
  :meth:`MVFA.describe` and the grid tables: it is not a valid zero-shot or few-shot number.
- With ``official_checkpoint`` (the original's ``{"seg_adapters", "det_adapters"}`` files) nothing is trained.

Example:
    >>> model = MVFA(official_checkpoint="ckpt/few-shot/Liver.pth")  # doctest: +SKIP
    >>> Engine().test(model, datamodule=MedBMAD(root="data", category="Liver", shots=4))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torchmetrics.functional.classification import binary_auroc
from torchvision.transforms.v2 import Compose, InterpolationMode, Normalize, Resize

from anomalib_medclip.backbones import Activation, PosEmbedMode, config_patch_size, native_image_size
from anomalib_medclip.models.components import MedCLIPModuleMixin, quarter_layers
from anomalib_medclip.models.components.losses import MapLoss
from anomalib_medclip.models.components.official import original_activation
from anomalib_medclip.models.mvfa.torch_model import MVFAModel, augment_views, fusion_ranges
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["MVFA"]

logger = logging.getLogger(__name__)

Selection = Literal["validation", "last", "test_set"]
TEST_SET_NOTE = "test-set-selected: the epoch was chosen on the test split; not a valid zero-shot or few-shot number"


class MVFA(MedCLIPModuleMixin, AnomalibModule):
    """MVFA zero- and few-shot anomaly detection and segmentation.

    Args:
        backbone: open_clip architecture; the original uses ``"ViT-L-14-336"``.
        pretrained: open_clip tag, local weights file, or ``None`` for seeded random weights (tests only).
        image_size: input size and size of the maps (the original: 240). A size that is not a multiple of the patch
            size runs the tower on the whole patches (ViT-L/14 at 240: the top-left 238 px, 17 x 17 patches), as
            the original's stride-14 convolution does.
        activation: ``"original"`` (what the original's vendored open_clip builds), ``"auto"``, ``"gelu"``,
            ``"quick_gelu"``.
        pos_embed_mode: positional-embedding resize kernel (the original: bicubic with antialias).
        seed: seed of a random backbone and of the adapters' initialisation.
        object_name: object phrase of the prompts; ``None`` takes the datamodule's (MedBMAD: MVFA's ``REAL_NAME``).
        layers: 1-indexed layers with adapters (``None`` = quarters of the tower: 6/12/18/24 for ViT-L).
        few_shot: memory bank of the normal training images and augmented training; ``None`` = when the datamodule
            has ``shots`` (MedBMAD's K-shot protocol).
        image_score: ``"map"`` (few-shot image score = max of the fused map, the original on the segmentation
            categories), ``"detection"`` (fused detection score), ``"auto"`` = ``"map"`` when the data has masks.
        faithful: reproduce the original's memory bank with the CLS token of every support view.
        clip_normalize: normalise images with CLIP's mean/std; the original feeds ``[0, 1]`` images (``False``).
        selection: ``"validation"``, ``"last"`` or ``"test_set"`` (see the module docstring).
        official_checkpoint: the original's adapter file; given, the model is not trained.
        lr: Adam learning rate of the adapters.
        pre_processor, post_processor, evaluator, visualizer: anomalib components.
        volume_evaluator: the 3D evaluation of volumes (``True`` = default settings, ``False`` = off).
    """

    def __init__(
        self,
        backbone: str = "ViT-L-14-336",
        pretrained: str | Path | None = "openai",
        image_size: int | None = 240,
        activation: Activation | Literal["original"] = "original",
        pos_embed_mode: PosEmbedMode = "bicubic-antialias",
        seed: int = 0,
        object_name: str | None = None,
        layers: Sequence[int] | None = None,
        few_shot: bool | None = None,
        image_score: Literal["auto", "map", "detection"] = "auto",
        faithful: bool = False,
        clip_normalize: bool = False,
        selection: Selection = "validation",
        official_checkpoint: str | Path | None = None,
        lr: float = 1e-3,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
        volume_evaluator: VolumeEvaluator | bool = True,
    ) -> None:
        if selection not in {"validation", "last", "test_set"}:
            msg = f"selection must be 'validation', 'last' or 'test_set', got {selection!r}."
            raise ValueError(msg)
        if image_score not in {"auto", "map", "detection"}:
            msg = f"image_score must be 'auto', 'map' or 'detection', got {image_score!r}."
            raise ValueError(msg)
        if activation == "original":
            activation = original_activation(backbone, pretrained, image_size)
        size = image_size or native_image_size(backbone)
        patch = config_patch_size(backbone)
        tower = size - size % patch if size and patch else size  # the tower sees the whole patches (stride-p conv)
        super().__init__(
            backbone=backbone, pretrained=pretrained, image_size=tower, pos_embed_mode=pos_embed_mode, seed=seed,
            activation=activation,
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer,
            volume_evaluator=volume_evaluator,
        )  # fmt: skip
        self.model = self.build_model(
            lambda clip: MVFAModel(
                clip, tuple(layers) if layers is not None else quarter_layers(clip.visual_depth), faithful=faithful
            )
        )
        if pre_processor is True:  # resize to the input size (maps have it); CLIP's normalisation only if asked
            info = self.model.backbone.info
            steps = [Resize((size, size), antialias=True, interpolation=InterpolationMode.BICUBIC)]
            self.pre_processor = PreProcessor(
                transform=Compose([*steps, Normalize(mean=info.mean, std=info.std)]) if clip_normalize else steps[0]
            )
        if official_checkpoint is not None:
            self.model.load_official_checkpoint(official_checkpoint)
        self.object_name = object_name
        self.map_loss = MapLoss.reference(normal_dice=False, focal_smoothing=1e-5)  # MVFA's loss.py, exactly
        self.official_checkpoint = official_checkpoint
        self.few_shot, self.image_score, self.selection, self.lr = few_shot, image_score, selection, lr
        self._trained_seg = True  # whether the last training batch trained the segmentation adapters
        self._best: dict[str, Any] | None = None  # selected epoch: score, epoch and the adapters' state
        self._outputs: list[tuple[torch.Tensor, ...]] = []
        self._fit_val_limit: int | float | None = None  # the trainer's limit, while fit runs without validation
        self._zero_shot_fit = False  # the last fit ran without validation (leave_one_out)

    @property
    def is_trainable(self) -> bool:
        """Unless the original's released adapters are loaded (``official_checkpoint``)."""
        return self.official_checkpoint is None

    @property
    def learning_type(self) -> LearningType:
        """ONE_CLASS (= trainable, so anomalib calls ``fit``) without an official checkpoint; else zero/few-shot."""
        if self.is_trainable:
            return LearningType.ONE_CLASS
        return LearningType.FEW_SHOT if self.model.few_shot else LearningType.ZERO_SHOT

    # ------------------------------------------------------------------ data-dependent set-up
    def _datamodule(self) -> Any:
        return getattr(getattr(self, "_trainer", None), "datamodule", None)

    def _few_shot_mode(self) -> bool:
        """``few_shot``, or when ``None`` whether the datamodule serves a K-shot list (``shots``)."""
        if self.few_shot is not None:
            return self.few_shot
        return getattr(self._datamodule(), "shots", None) is not None

    def _transform(self, images: torch.Tensor) -> torch.Tensor:
        """What the pre-processor does to batches in the loops (images read outside them bypass it)."""
        transform = getattr(self.pre_processor, "transform", None)
        return transform(images) if transform is not None else images

    def setup(self, stage: str) -> None:
        """Prompts; the image-score rule from the data; the support images of the few-shot memory bank."""
        super().setup(stage)
        datamodule = self._datamodule()
        data = getattr(datamodule, "test_data", None) or getattr(datamodule, "val_data", None)
        if self.image_score != "auto" or data is not None:
            has_masks = getattr(getattr(data, "task", None), "value", None) == "segmentation"
            by_map = self.image_score == "map" or (self.image_score == "auto" and has_masks)
            self.model.map_image_score = torch.tensor(by_map, device=self.model.map_image_score.device)
        if self._few_shot_mode() and not self.model.few_shot:
            self.model.set_support(self.support_images())
        if stage == "fit" and getattr(datamodule, "leave_one_out", False):
            # zero-shot protocol: the target category's images must not reach training or model selection
            self._fit_val_limit = self.trainer.limit_val_batches
            self.trainer.limit_val_batches = 0
            logger.info("MVFA zero-shot (leave_one_out): no validation on the target category during fit.")

    def support_images(self) -> torch.Tensor:
        """The normal images of the datamodule's training split (MedBMAD ``shots=K``: the K listed ones)."""
        dataset = getattr(self._datamodule(), "train_data", None)
        if dataset is None:
            msg = "MVFA few-shot needs a datamodule with a training split to take the normal support images from."
            raise ValueError(msg)
        normal = (dataset.samples["label_index"].to_numpy() == 0).nonzero()[0]
        if len(normal) == 0:
            msg = "MVFA few-shot: the training split has no normal images for the memory bank."
            raise ValueError(msg)
        logger.info("MVFA few-shot: memory bank of %d normal training images x 11 augmented views.", len(normal))
        return torch.cat([self._transform(dataset[int(i)].image.unsqueeze(0).to(self.device)) for i in normal])

    def calibrate(self, loaders: Iterable | torch.utils.data.DataLoader) -> None:
        """Few-shot fusion ranges: min and max of each fused part over ``loaders`` (the original: over the test set)."""
        loaders = [loaders] if isinstance(loaders, torch.utils.data.DataLoader) else list(loaders)
        with torch.no_grad():
            parts = [self.model.raw_scores(self._transform(b.image.to(self.device))) for ld in loaders for b in ld]
        self.model.set_score_ranges(fusion_ranges(parts))
        logger.info("MVFA few-shot: fusion ranges from %d images (extra pass).", sum(len(p.det_score) for p in parts))

    def on_validation_start(self) -> None:
        """Few-shot: the fusion ranges on the validation split (the adapters may have changed)."""
        self._outputs = []
        if self.model.few_shot:
            self.calibrate(self.trainer.val_dataloaders)

    def on_test_start(self) -> None:
        """Thresholds and normalisation from the validation split when no validation set them (zero-shot fit)."""
        post = self.post_processor
        datamodule = self._datamodule()
        uncalibrated = isinstance(post, PostProcessor) and bool(torch.isnan(post.image_min))
        if uncalibrated and getattr(datamodule, "val_data", None) is not None and len(datamodule.val_data):
            self._calibrate_post_processor(datamodule.val_dataloader())
        if self.model.few_shot and not self.model.score_ranges.numel():
            logger.warning("MVFA few-shot: no validation ranges for the fusion; the parts are summed unnormalised.")

    def _calibrate_post_processor(self, loader: torch.utils.data.DataLoader) -> None:
        """What a validation run does for the post-processor (fusion ranges first when few-shot), as an extra pass."""
        if self.model.few_shot:
            self.calibrate(loader)
        post = self.post_processor
        with torch.no_grad():
            for batch in loader:
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                batch.image = self._transform(batch.image)
                post.on_validation_batch_end(self.trainer, self, batch.update(**self.model(batch.image)._asdict()))
        post.on_validation_epoch_end(self.trainer, self)
        logger.info("MVFA: thresholds and normalisation from the validation split (extra pass before test).")

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Focal + Dice on the segmentation maps (batches with masks) and BCE on the detection scores."""
        del args, kwargs
        images, masks, labels = batch.image, batch.gt_mask, batch.gt_label
        if labels is None:
            msg = "MVFA trains its detection adapters on image labels, but the training batches have none."
            raise ValueError(msg)
        if self._few_shot_mode():  # the original trains on the 11 augmented views of every few-shot image
            views = len(augment_views(images[:1]))
            images, labels = augment_views(images), labels.repeat(views)
            masks = augment_views(masks.float().unsqueeze(1)).squeeze(1) > 0.5 if masks is not None else None
        seg_probs, det_scores = self.model.forward_train(images)
        target = labels.float()
        loss = torch.stack([F.binary_cross_entropy_with_logits(s, target) for s in det_scores]).sum()
        self._trained_seg = masks is not None
        if masks is not None:
            loss = loss + torch.stack([self.map_loss(p, masks) for p in seg_probs]).sum()
        elif not getattr(self, "_warned_no_mask", False):
            logger.warning("MVFA: training batches without masks train the detection adapters only (as the original).")
            self._warned_no_mask = True
        self.model.invalidate_memory()
        self.log_train_loss(loss, batch_size=len(images))
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """After a batch without masks only the detection adapters step, as the original's two optimisers do."""
        del optimizer
        if not self._trained_seg:
            for parameter in self.model.seg_adapters.parameters():
                parameter.grad = None  # Adam skips parameters without gradient: no update, no state change

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        """One Adam over two groups (seg, det adapters): per-parameter updates equal the original's two Adams."""
        if not self.is_trainable:
            return None
        groups = [
            {"params": list(self.model.seg_adapters.parameters())},
            {"params": list(self.model.det_adapters.parameters())},
        ]
        return torch.optim.Adam(groups, lr=self.lr, betas=(0.5, 0.999))

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> Batch:
        """Predict; during fit keep scores, labels and maps for the model selection."""
        batch = super().validation_step(batch, *args, **kwargs)
        if self.trainer.state.fn == TrainerFn.FITTING and self.selection == "validation":
            self._outputs.append(self._selection_outputs(batch))
        return batch

    @staticmethod
    def _selection_outputs(batch: Batch) -> tuple[torch.Tensor, ...]:
        masks = batch.gt_mask if batch.gt_mask is not None else None
        parts = (batch.pred_score.float().cpu(), batch.gt_label.int().cpu())
        if masks is None:
            return parts
        return (*parts, batch.anomaly_map.float().flatten().cpu(), masks.int().flatten().cpu())

    def _selection_score(self) -> float | None:
        """Image AUROC (+ pixel AUROC with masks) of the collected outputs, the original's criterion."""
        outputs = self._outputs
        if self.selection == "test_set":
            datamodule = self._datamodule()
            loader = datamodule.test_dataloader()
            outputs = []
            with torch.no_grad():
                for batch in loader:
                    batch = self.transfer_batch_to_device(batch, self.device, 0)
                    batch.image = self._transform(batch.image)
                    outputs.append(self._selection_outputs(batch.update(**self.model(batch.image)._asdict())))
        if not outputs:
            return None
        columns = [torch.cat(column) for column in zip(*outputs, strict=True)]
        labels = columns[1]
        if labels.min() == labels.max():
            return None
        score = float(binary_auroc(columns[0], labels))
        if len(columns) == 4 and columns[3].any():
            score += float(binary_auroc(columns[2], columns[3], thresholds=1000))
        return score

    def on_validation_epoch_end(self) -> None:
        """During fit: keep the adapters of the best epoch so far (ties: the later epoch, as ``train_zero.py``)."""
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self._select()

    def on_train_epoch_end(self) -> None:
        """Test-set selection when fit runs without validation (zero-shot protocol)."""
        if self._fit_val_limit is not None and self.selection == "test_set":
            self._select()

    def _select(self) -> None:
        if self.selection == "last" or (self.selection == "validation" and self._fit_val_limit is not None):
            return
        score = self._selection_score()
        self._outputs = []
        if score is None:
            logger.warning("MVFA selection: one class only on the %s split; epoch not scored.", self.selection)
            return
        if self._best is None or score >= self._best["score"]:
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items() if not k.startswith("backbone.")}
            self._best = {"score": score, "epoch": self.current_epoch, "state": state}
        self.log("selection_score", score)

    def on_fit_end(self) -> None:
        """Restore the selected epoch's adapters (and fusion ranges) and the trainer's validation limit."""
        if self._fit_val_limit is not None:
            self.trainer.limit_val_batches = self._fit_val_limit
            self._fit_val_limit = None
            self._zero_shot_fit = True
        if self._best is not None:
            self.model.load_state_dict(self._best["state"], strict=False)
            logger.info(
                "MVFA: %s-selected epoch %d (score %.4f).", self.selection, self._best["epoch"], self._best["score"]
            )

    # ------------------------------------------------------------------ checkpoints and reports
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Slim checkpoint holding the selected epoch's adapters, and how they were selected."""
        super().on_save_checkpoint(checkpoint)
        if self._best is not None:
            checkpoint["state_dict"].update({f"model.{k}": v for k, v in self._best["state"].items()})
        checkpoint["mvfa_selection"] = self.selection_record()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the selection record with the weights."""
        super().on_load_checkpoint(checkpoint)
        record = checkpoint.get("mvfa_selection") or {}
        if record.get("epoch") is not None:
            self._best = {"score": record["score"], "epoch": record["epoch"], "state": {}}

    def selection_record(self) -> dict[str, Any]:
        """How the weights were chosen; test-set selection is labelled as such."""
        split = {"validation": "validation split", "last": "last epoch", "test_set": "test split"}[self.selection]
        zero_shot_fit = self._zero_shot_fit or self._fit_val_limit is not None
        if self.selection == "validation" and zero_shot_fit and self._best is None:
            split = "last epoch (leave_one_out: the target's validation split is not used during fit)"
        best = self._best or {}
        record = {"selection": split, "epoch": best.get("epoch"), "score": best.get("score")}
        if self.selection == "test_set":
            record["test_set_selected"] = True
            record["note"] = TEST_SET_NOTE
        return record

    def describe(self) -> dict[str, Any]:
        """The mixin's description plus the model selection, the few-shot state and the image-score rule."""
        return {
            **super().describe(),
            "model_selection": self.selection_record(),
            "few_shot": self.model.few_shot,
            "image_score": (
                "max of the fused map"
                if self.model.few_shot and bool(self.model.map_image_score)
                else "detection branch"
            ),
        }
