# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The contract every Lightning model of the package follows: :class:`MedCLIPModuleMixin`.

A model is ``class X(MedCLIPModuleMixin, AnomalibModule)`` (a *direct* ``AnomalibModule`` subclass, which anomalib's
``get_model`` requires). It lists its own constructor arguments (their defaults are the method's, and the stock CLI
shows them), passes the shared ones to ``super().__init__``, then builds its torch model with
``self.model = self.build_model(lambda backbone: TorchModel(backbone, ...))``. The mixin does the rest, the same way
for every model:

- builds the shared :class:`~anomalib_medclip.backbones.CLIPBackbone` and a pre-processor for it (resize, the
  normalisation of its weights); :meth:`MedCLIPModuleMixin.build_model` hands that backbone to the model's factory
  under the model's ``seed``, so that the initialisation of its learnable parts is part of its identity;
- the text lifecycle (:class:`~anomalib_medclip.models.components.text.PromptedModel`): Lightning's ``setup`` hook
  sets up the prompts for every stage (fit, validate, test, predict) with the object phrase of the model's
  ``object_name``, else the datamodule's, else ``"object"`` (warned); checkpoints record the phrase and the model
  class, and loading one restores the phrase, so ``Model.load_from_checkpoint(path)`` then ``model(images)`` works
  outside any Lightning stage;
- the 3D evaluation of volumes as a constructor component, ``volume_evaluator`` (like anomalib's ``evaluator``);
- a ``PostProcessor`` whatever the learning type, the slice-aware visualiser, the validation step, slim
  checkpoints (:class:`~anomalib_medclip.models.components.SlimCheckpointMixin`) and :meth:`describe` for reports.

``docs/adding-a-model.md`` walks through it with ``VanillaCLIP``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from anomalib import LearningType
from anomalib.data import Batch, InferenceBatch
from anomalib.metrics import Evaluator
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch import seed_everything
from torch import nn
from torchvision.transforms.v2 import Compose, InterpolationMode, Normalize, Resize
from typing_extensions import override

from anomalib_medclip.backbones import Activation, CLIPBackbone, PosEmbedMode
from anomalib_medclip.models.components.checkpoint import SlimCheckpointMixin, check_checkpoint_file
from anomalib_medclip.models.components.resize import resize_bicubic_antialias
from anomalib_medclip.models.components.text import PromptedModel
from anomalib_medclip.prompts import DEFAULT_OBJECT, indefinite_article
from anomalib_medclip.utils import describe
from anomalib_medclip.visualization import SliceVisualizer
from anomalib_medclip.volumes import VolumeEvaluator

__all__ = ["MedCLIPModuleMixin"]

logger = logging.getLogger(__name__)

_MODEL_KEY = "anomalib_medclip_model"
_RUN_SEED: str | None = None
# A seed this process inherited (a parent's ``seed_everything``, Lightning's DDP launcher, an exported variable): a
# seed to apply, as Lightning's ``seed_everything(None)`` applies it, not a sign that this process is seeded.
_INHERITED_SEED = os.environ.get("PL_GLOBAL_SEED")
ModelT = TypeVar("ModelT", bound=PromptedModel)

EXPORT_EXTRA_HINT = "pip install 'anomalib-medclip[export]'"


class SameResizePreProcessor(PreProcessor):
    """Anomalib's pre-processor whose exported graph applies the very transform the Engine loops apply.

    Anomalib exports a copy of the transform with resize antialiasing switched off (for old ONNX opsets); CLIP inputs
    are usually smaller than medical images, so exported and in-loop scores then differ (by up to 0.15 in scores and
    0.33 in maps). Here the exported graph keeps the antialiased bicubic resize, written as two matrix products
    (:func:`resize_bicubic_antialias`): ONNX Runtime and OpenVINO then both compute it as PyTorch does, which
    ONNX's antialiased ``Resize`` does not guarantee (OpenVINO's differs).
    """

    @override
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.transform or not torch.compiler.is_exporting():
            return self.transform(batch) if self.transform else batch
        steps = getattr(self.transform, "transforms", [self.transform])
        if len(steps) == 2 and _is_antialiased_bicubic(steps[0]) and isinstance(steps[1], Normalize):
            # normalised first: each output's resize weights sum to one, so the two commute, and OpenVINO's CPU plugin
            # fails to compile a per-channel normalisation fused after the resize's matrix product
            return resize_bicubic_antialias(steps[1](batch), (steps[0].size[0], steps[0].size[1]))
        return self.transform(batch)


def _is_antialiased_bicubic(step: object) -> bool:
    """A ``Resize`` to a fixed height and width with antialiased bicubic interpolation (what the models build)."""
    return (
        isinstance(step, Resize)
        and step.antialias is not False
        and step.interpolation == InterpolationMode.BICUBIC
        and isinstance(step.size, Sequence)
        and len(step.size) == 2
        and step.max_size is None
    )


def _volume_evaluator(value: VolumeEvaluator | Mapping[str, Any] | bool) -> VolumeEvaluator | None:
    """The callback for a ``volume_evaluator`` argument: an instance, settings (from a checkpoint), on or off."""
    if isinstance(value, VolumeEvaluator):
        return value
    if isinstance(value, Mapping):
        return VolumeEvaluator(**value)
    if value is True:
        return VolumeEvaluator()
    if value is False:
        return None
    msg = f"volume_evaluator must be a VolumeEvaluator, its settings (a mapping), True or False; got {value!r}."
    raise TypeError(msg)


class MedCLIPModuleMixin(SlimCheckpointMixin, ABC):
    """Shared Lightning-side behaviour of the package's CLIP models (see the module docstring).

    Args:
        backbone: open_clip architecture or ``hf-hub:`` id.
        pretrained: open_clip tag, local weights file, or ``None`` for seeded random weights (tests, offline demos).
        image_size: input size; ``None`` keeps the backbone's native size.
        activation: ``"auto"`` (what the weights were trained with), ``"gelu"`` or ``"quick_gelu"``.
        pos_embed_mode: positional-embedding resize kernel for a non-native ``image_size``.
        seed: seed of a random backbone and of the initialisation of the model's learnable parts.
        pre_processor, post_processor, evaluator, visualizer: anomalib components (``True`` = defaults).
        volume_evaluator: the 3D evaluation of volumetric test sets: a :class:`VolumeEvaluator` (on the CLI,
            ``--model.volume_evaluator.hd95 true`` etc.), ``True`` for the default one (or, when a checkpoint is
            loaded, the settings stored in it), ``False`` to switch it off.
    """

    model: PromptedModel
    """The torch model (``self.model = self.build_model(factory)`` in the model's ``__init__``)."""
    object_name: str | None = None
    """Object phrase the user gave (``None``: the datamodule's). Models whose prompts name the object set it."""
    map_loss: nn.Module
    """Loss of one layer's two-class map against the masks (set by models that train maps)."""
    clip_params: list[nn.Parameter]
    """CLIP parameters the model unfroze for training (``[]``: the backbone is frozen)."""
    volume_evaluator: VolumeEvaluator | None
    """The 3D evaluation callback (``None``: off)."""

    def __init__(
        self,
        *,
        backbone: str,
        pretrained: str | Path | None,
        image_size: int | None,
        activation: Activation,
        pos_embed_mode: PosEmbedMode,
        seed: int,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
        volume_evaluator: VolumeEvaluator | bool = True,
    ) -> None:
        clip = CLIPBackbone(
            backbone, pretrained, image_size=image_size, activation=activation, pos_embed_mode=pos_embed_mode, seed=seed
        )
        super().__init__(
            pre_processor=self.clip_pre_processor(clip, pre_processor),
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.clip_params = []
        self._volume_evaluator_given = volume_evaluator is not True
        self.volume_evaluator = _volume_evaluator(volume_evaluator)
        self._store_volume_settings()
        self._new_backbone = [clip]  # in a list: not registered as a submodule until the torch model holds it
        self._seed = seed

    def build_model(self, factory: Callable[[CLIPBackbone], ModelT]) -> ModelT:
        """``factory(backbone)`` on the backbone built for this model, under the model's seed (once).

        The seed makes the initialisation of the learnable parts part of the model's identity: the same settings
        give the same model, which slim checkpoints and the reference ports' parity rely on.
        """
        if not self._new_backbone:
            msg = f"{type(self).__name__}.build_model can be called once, in __init__."
            raise RuntimeError(msg)
        with torch.random.fork_rng(devices=[]):  # the CPU generator, restored after; CUDA's is never touched
            torch.default_generator.manual_seed(self._seed)
            return factory(self._new_backbone.pop())

    @property
    @abstractmethod
    def is_trainable(self) -> bool:
        """Whether ``anomalib train`` trains something (else it only validates, to learn thresholds, and tests)."""

    # ------------------------------------------------------------------ anomalib components
    @staticmethod
    def clip_pre_processor(backbone: CLIPBackbone, pre_processor: nn.Module | bool = True) -> nn.Module | bool:
        """Resize + normalise for ``backbone`` when ``pre_processor`` is ``True``; otherwise pass it through."""
        if pre_processor is not True:
            return pre_processor
        size = backbone.image_size
        transform = Compose(
            [
                Resize((size, size), antialias=True, interpolation=InterpolationMode.BICUBIC),
                Normalize(mean=backbone.info.mean, std=backbone.info.std),
            ]
        )
        return SameResizePreProcessor(transform=transform)

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        """Normalisation and F1-adaptive thresholds learnt on the validation split."""
        return PostProcessor()

    @staticmethod
    def configure_visualizer() -> SliceVisualizer:
        """Anomalib's overlays, also for slices of volumes (whose ``image_path`` PIL cannot open)."""
        return SliceVisualizer()

    def configure_callbacks(self) -> list[Any]:
        """Anomalib's components, then the 3D evaluation (it must see post-processed batches; 2D data passes by)."""
        volume = [self.volume_evaluator] if self.volume_evaluator is not None else []
        return [*super().configure_callbacks(), *volume]

    def _store_volume_settings(self) -> None:
        """Keep the 3D evaluation's settings (not the callback object) in the hyper-parameters and checkpoints."""
        settings = dict(self.volume_evaluator.settings) if self.volume_evaluator is not None else False
        for store in (self.hparams, getattr(self, "_hparams_initial", {})):
            store["volume_evaluator"] = settings

    # ------------------------------------------------------------------ inference and export
    @override
    def forward(self, batch: torch.Tensor, *args: Any, **kwargs: Any) -> InferenceBatch:
        """Anomalib's pipeline (pre-processor, model, post-processor); in eval mode without autograd, as in the Engine.

        anomalib's ``TorchInferencer`` calls this with autograd on, which moves the outputs by up to 3e-6 from the
        Engine loops' (measured on the tiny backbone); without autograd, exported torch models equal them exactly.
        Training-mode calls and graph capture (``torch.export``, tracing) run in the caller's mode.
        """
        if self.training or torch.compiler.is_exporting() or torch.jit.is_tracing():
            return super().forward(batch, *args, **kwargs)
        with torch.no_grad():
            return super().forward(batch, *args, **kwargs)

    def to_onnx(self, *args: Any, **kwargs: Any) -> Path:
        """Anomalib's ONNX export (also behind ``to_openvino``), at opset 18.

        The text of the stored object phrase is encoded before tracing (frozen into the graph); the pre-processor's
        antialiased resize is exported as it runs in the Engine loops (:class:`SameResizePreProcessor`).
        """
        missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
        if missing:
            msg = f"ONNX export needs {', '.join(missing)}: `{EXPORT_EXTRA_HINT}`."
            raise ModuleNotFoundError(msg)
        if not self.model.text_ready:
            self.model.setup_text(self.resolve_object_name())
        kwargs.setdefault("opset_version", 18)
        return super().to_onnx(*args, **kwargs)

    def to_openvino(self, *args: Any, **kwargs: Any) -> Path:
        """Anomalib's OpenVINO export (through :meth:`to_onnx`), FP32 weights unless FP16 compression is asked for.

        The IR cannot carry an inference precision: run it with
        :class:`anomalib_medclip.deploy.OpenVINOInferencer` (FP32 by default) or give anomalib's inferencer
        ``config={"INFERENCE_PRECISION_HINT": "f32"}``; OpenVINO's CPU default is bf16 where the CPU has it.
        """
        if importlib.util.find_spec("openvino") is None:
            msg = f"OpenVINO export needs openvino: `{EXPORT_EXTRA_HINT}`."
            raise ModuleNotFoundError(msg)
        return super().to_openvino(*args, **kwargs)

    # ------------------------------------------------------------------ learning
    @property
    def learning_type(self) -> LearningType:
        """ONE_CLASS when trainable (the one type anomalib fits: here it means "trains"), else ZERO_SHOT."""
        return LearningType.ONE_CLASS if self.is_trainable else LearningType.ZERO_SHOT

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No sanity validation (it would learn thresholds before training); epochs stay the user's choice."""
        return {"num_sanity_val_steps": 0}

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> Batch:
        """Predict on the validation batch (thresholds and normalisation are learnt from it)."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    def learnable_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the torch model outside the frozen backbone (the method's own parts)."""
        return [p for name, p in self.model.named_parameters() if p.requires_grad and not name.startswith("backbone.")]

    def layer_map_loss(self, maps: Sequence[torch.Tensor], batch: Batch) -> torch.Tensor | None:
        """Sum over layers of ``self.map_loss(probabilities, masks)``; ``None`` (warned once) for a batch without masks.

        The reference methods train the map on masks and the image score on labels; classification-only data (BMAD's
        Chest, OCT2017, Histopathology) then trains the image term only.
        """
        if getattr(self, "map_loss", None) is None:
            msg = f"{type(self).__name__} sets no map_loss, so it cannot train maps."
            raise NotImplementedError(msg)
        if batch.gt_mask is not None:
            return torch.stack([self.map_loss(m, batch.gt_mask) for m in maps]).sum()
        if not getattr(self, "_warned_no_mask", False):
            logger.warning("%s: training batches have no masks; only the image loss is trained.", type(self).__name__)
            self._warned_no_mask = True
        return None

    # ------------------------------------------------------------------ text lifecycle
    def resolve_object_name(self) -> str:
        """Object phrase for the prompts: the model's ``object_name``, then the datamodule's, then ``"object"``."""
        if self.object_name:
            return self.object_name
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if name := getattr(datamodule, "object_name", None):
            return str(name)
        logger.warning("No object_name given and the datamodule has none: prompts use '%s'.", DEFAULT_OBJECT)
        return DEFAULT_OBJECT

    def setup(self, stage: str) -> None:
        """Lightning, before every stage: check the checkpoint to restore, set up the prompts unless they are."""
        del stage
        ckpt_path = getattr(getattr(self, "_trainer", None), "ckpt_path", None)  # the one Lightning restores next
        if isinstance(ckpt_path, str | Path):
            check_checkpoint_file(ckpt_path)
        if not self.model.text_ready:
            self.model.setup_text(self.resolve_object_name())

    def on_fit_start(self) -> None:
        """Seed the run (:meth:`seed_run`); refuse a trainable model an empty training split (Lightning skips it)."""
        self.seed_run()
        datamodule = getattr(self.trainer, "datamodule", None)
        train = getattr(datamodule, "train_data", None)
        if self.is_trainable and train is not None and len(train) == 0:
            reason = getattr(datamodule, "empty_train_split_reason", None) or (
                "Use data with a training split, or a setting that does not train (e.g. official_checkpoint=..., "
                "finetune_layers=0)."
            )
            msg = (
                f"{type(self).__name__} trains ({self.learning_type.value}), but the training split of "
                f"{describe(datamodule)} is empty. {reason}"
            )
            raise ValueError(msg)

    def seed_run(self) -> None:
        """Seed Python, NumPy, torch and the dataloader workers with the model's ``seed`` unless the caller seeded.

        anomalib 2.7's CLI parses ``--seed_everything`` but never applies it, so without this two stock
        ``anomalib train`` runs shuffle and augment differently. A seed set by the caller (``seed_everything`` in
        Python, ``anomalib benchmark``'s job seed, the ``anomalib-medclip`` command) is kept; one this method set for
        an earlier run in the same process is set again, so repeated fits in one process are reproducible too. A
        ``PL_GLOBAL_SEED`` inherited from the environment is applied (Lightning's reading of it), not taken as done.
        """
        global _RUN_SEED  # one process-wide record of the seed this method applied
        current = os.environ.get("PL_GLOBAL_SEED")
        if current in {None, _RUN_SEED}:
            seed_everything(self._seed, workers=True, verbose=False)
            _RUN_SEED = str(self._seed)
        elif current == _INHERITED_SEED:
            seed_everything(workers=True, verbose=False)  # seed=None reads the inherited PL_GLOBAL_SEED

    def log_train_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        """Log ``train_loss`` per step and per epoch (short runs log fewer steps than Lightning's logging interval)."""
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, *args: Any, **kwargs: Any) -> Any:
        """Lightning's, after checking that the file is a whole checkpoint (a clear error naming it otherwise)."""
        if isinstance(checkpoint_path, str | Path):
            check_checkpoint_file(checkpoint_path)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ------------------------------------------------------------------ checkpoints and reports
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Slim checkpoint, plus the model class and the object phrase of the prompts."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[_MODEL_KEY] = {"class": type(self).__name__, "torch_model": type(self.model).__name__}
        checkpoint["object_name"] = self.model.object_name

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse another model's checkpoint; restore the prompts' phrase and the stored 3D-evaluation settings.

        The stored settings apply when the model was built with the default ``volume_evaluator=True``; a checkpoint
        trained with ``False`` cannot switch off the callback Lightning has already attached (pass ``False`` again).
        """
        saved = checkpoint.get(_MODEL_KEY)
        if saved is not None and saved.get("torch_model") != type(self.model).__name__:
            saved_class, own = saved.get("class"), type(self).__name__
            msg = (
                f"This checkpoint is {indefinite_article(saved_class)} {saved_class} checkpoint, not "
                f"{indefinite_article(own)} {own} one: load it with --model {saved_class} (or "
                f"{saved_class}.load_from_checkpoint)."
            )
            raise ValueError(msg)
        super().on_load_checkpoint(checkpoint)
        phrase = checkpoint.get("object_name")
        if phrase and phrase != self.model.object_name:
            if self.object_name and self.object_name != phrase:
                logger.warning(
                    "object_name '%s' replaced by '%s', the phrase this checkpoint's prompts were set up with.",
                    self.object_name,
                    phrase,
                )
            self.model.setup_text(phrase)
        stored = checkpoint.get("hyper_parameters", {}).get("volume_evaluator")
        if not self._volume_evaluator_given and isinstance(stored, Mapping) and self.volume_evaluator is not None:
            self.volume_evaluator.configure(**stored)
            self._store_volume_settings()

    def describe(self) -> dict[str, Any]:
        """What the numbers were produced with: learning type, prompts' phrase, backbone identity, all settings."""
        return {
            "learning_type": self.learning_type,
            "object_name": self.model.object_name,
            "backbone": self.model.backbone.identity(),
            "settings": dict(self.hparams),
        }
