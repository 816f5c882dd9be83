# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""BMAD medical anomaly-detection benchmark (six categories) in every release layout, including MVFA's.

anomalib ships a ``BMAD`` datamodule that only reads one reorganised layout and always reports a segmentation task;
this module reads the original BMAD releases, the MVFA repackaging (``<Category>_AD/``, no ``train/``) and their
variants (see :mod:`anomalib_medclip.data.bmad_layout`). Brain, Liver and Retina_RESC are segmentation categories
(pixel masks, ``mask > 0``), the others classification. For the MVFA protocols:

- ``shots=K``: train on the K normal + K abnormal ``valid`` images listed in ``fewshot_seed/<Category>/<K>-shot.txt``
  (lines ``n-<i>: names...`` / ``a-<i>: names...``); those images are removed from the validation split;
- ``leave_one_out=True`` (zero-shot): train on the ``test`` images of the other five categories found under ``root``;
  images of segmentation categories carry their masks (zeros for normal images), the others none, and every training
  batch holds one category's images (:class:`~anomalib_medclip.data.samplers.GroupedBatchSampler`), so models that
  train maps train them on the segmentation sources, as MVFA's ``train_zero.py`` does;
- neither, on a release without ``train/`` (MVFA's): the train split is empty (``len(train_data) == 0``), which only
  models that do not train can use (zero-shot CLIP, official checkpoints); :func:`no_train_split_message` is the
  error for the others.

Example:
    >>> from anomalib_medclip.data import MedBMAD
    >>> datamodule = MedBMAD(root="datasets/BMAD", category="Liver", shots=4)  # doctest: +SKIP
    >>> datamodule.object_name  # doctest: +SKIP
    'Liver'
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from anomalib.data import AnomalibDataModule, AnomalibDataset, ImageItem
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from lightning.pytorch.utilities.types import TRAIN_DATALOADERS
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Image as TvImage
from torchvision.tv_tensors import Mask

from anomalib_medclip.data.bmad_layout import (
    CATEGORY_ALIASES,
    LABEL_DIRS,
    LOSSY_FORMATS,
    category_dir,
    find_split,
    image_header,
    label_folders,
    list_images,
    pair_masks,
    read_med_image,
    read_med_mask,
    split_folder_exists,
)
from anomalib_medclip.data.samplers import grouped_train_loader

__all__ = ["MedBMAD", "MedBMADDataset", "MedImageDataset", "make_med_bmad_dataset", "no_train_split_message"]

logger = logging.getLogger(__name__)

BMADCategory = Literal["Brain", "Liver", "Retina_RESC", "Retina_OCT2017", "Chest", "Histopathology"]
SEGMENTATION_CATEGORIES = ("Brain", "Liver", "Retina_RESC")
# Object phrases of MVFA's prompts (prompt.py REAL_NAME), so that results stay comparable with the paper.
OBJECT_NAMES = {
    "Brain": "Brain",
    "Liver": "Liver",
    "Retina_RESC": "retinal OCT",
    "Retina_OCT2017": "retinal OCT",
    "Chest": "Chest X-ray film",
    "Histopathology": "histopathological image",
}


def no_train_split_message(root: str | Path, category: str) -> str:
    """The error for a model that trains on a BMAD release without ``train/`` (the MVFA release) and no protocol.

    Args:
        root: The datamodule's root.
        category: The BMAD category (MVFA name).

    Returns:
        The message: what is missing, and the two protocols (``shots=K``, ``leave_one_out=True``) that train anyway.
    """
    return (
        f"BMAD {category} under {root} has no train/ split (the MVFA release ships only valid/ and test/), so a model "
        "that trains has nothing to train on: use shots=K or leave_one_out=True (MVFA's few-shot lists from valid/, "
        "or the other categories' test sets), or point root at a BMAD release with train/. Models that do not train "
        "(zero-shot CLIP, an official checkpoint) run without it."
    )


def _warn_lossy_masks(folder: Path, count: int, total: int) -> None:
    """Say, once per folder, that its lossy masks are binarised at half range."""
    warnings.warn(
        f"{count} of {total} masks in {folder} are JPEG (lossy): compression ringing around a lesion would count as "
        "lesion under the usual mask > 0 rule, so these masks are binarised at half range (>= 128 of 255) instead. "
        "Save the masks as PNG to read them exactly.",
        UserWarning,
        stacklevel=4,
    )


def _split_rows(category: str, split_path: Path, split: str) -> list[dict]:
    """Rows of one split folder, checking mask pairing and image/mask sizes."""
    rows = []
    for label, label_index in LABEL_DIRS.items():
        image_folder, mask_folder = label_folders(split_path, label)
        images = list_images(image_folder)
        masks = pair_masks(images, mask_folder) if category in SEGMENTATION_CATEGORIES else [None] * len(images)
        lossy = 0
        for image, mask in zip(images, masks, strict=True):
            if mask is None and label_index == 1 and category in SEGMENTATION_CATEGORIES:
                msg = f"Abnormal image {image} has no mask (looked in {mask_folder or 'label/anomaly_mask folders'})."
                raise ValueError(msg)
            if mask is not None:
                (mask_size, mask_format), (image_size, _) = image_header(mask), image_header(image)
                if mask_size != image_size:
                    msg = f"Mask {mask} size {mask_size} differs from image {image} {image_size}."
                    raise ValueError(msg)
                lossy += mask_format in LOSSY_FORMATS
            rows.append({"image_path": str(image), "mask_path": str(mask or ""), "label_index": label_index})
        if lossy:
            _warn_lossy_masks(mask_folder, lossy, sum(mask is not None for mask in masks))
    for row in rows:
        row |= {"split": split, "category": category, "segmentation": category in SEGMENTATION_CATEGORIES}
    return rows


def make_med_bmad_dataset(
    root: str | Path, category: BMADCategory | str, split: Split | str | None = None
) -> pd.DataFrame:
    """Build the samples of one BMAD category from whichever layout is on disk.

    Args:
        root: Folder holding the category folders (or a category folder itself).
        category: One of ``CATEGORY_ALIASES`` (MVFA names).
        split: Keep only ``train``, ``val`` or ``test``. Defaults to ``None`` (all present splits).

    Returns:
        Columns ``image_path``, ``mask_path`` (``""`` if none), ``label_index``, ``split``, ``category`` and
        ``segmentation`` (whether the category has pixel masks); ``attrs["task"]`` is ``"segmentation"`` for
        Brain/Liver/Retina_RESC, else ``"classification"``.

    Raises:
        FileNotFoundError: If the root, the category or all its split folders are missing.
        ValueError: For a mask without image, an abnormal segmentation image without mask, a size mismatch, or two
            files with one stem in a folder.
        OSError: If a mask's header cannot be read (truncated or corrupt file).

    Warns:
        UserWarning: Once per mask folder holding JPEG masks, which are binarised at half range.
    """
    folder = category_dir(Path(root), category)
    rows = []
    for name in ("train", "val", "test"):
        split_path = find_split(folder, name)
        if split_path is not None:
            rows += _split_rows(category, split_path, name)
    if not rows:
        msg = f"No images in {folder}; expected train/, valid/ (or val/) and test/ with good/ and Ungood/ folders."
        raise FileNotFoundError(msg)
    samples = pd.DataFrame(rows)
    if split is not None:
        samples = samples[samples.split == Split(split).value].reset_index(drop=True)
    samples.attrs["task"] = "segmentation" if category in SEGMENTATION_CATEGORIES else "classification"
    return samples


class MedImageDataset(AnomalibDataset):
    """2D medical images from a samples table, read without 8-bit saturation (see ``read_med_image``).

    A row's item carries a mask when the row's ``segmentation`` is true (the table's task when the column is absent),
    so a table pooling several categories (leave-one-out) serves masks for its segmentation categories only.

    Args:
        samples: Table as returned by :func:`make_med_bmad_dataset` (with ``attrs["task"]``).
        augmentations: Joint image/mask augmentations. Defaults to ``None``.
    """

    def __init__(self, samples: pd.DataFrame, augmentations: Transform | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self.samples = samples

    def __getitem__(self, index: int) -> ImageItem:
        """Image in [0, 1] as ``(3, H, W)``; for a segmentation row, ``mask > 0`` (zeros for normal images)."""
        row = self.samples.iloc[index]
        image = TvImage(read_med_image(row.image_path))
        label = int(row.label_index)
        gt_mask = None
        segmentation = row.segmentation if "segmentation" in row.index else self.task.value == "segmentation"
        if segmentation:
            empty = Mask(torch.zeros(image.shape[-2:], dtype=torch.bool))
            gt_mask = Mask(read_med_mask(row.mask_path)) if row.mask_path else empty
        if self.augmentations is not None:
            image, gt_mask = (
                self.augmentations(image, gt_mask) if gt_mask is not None else (self.augmentations(image), None)
            )
        from anomalib.data import ImageItem

        return ImageItem(
            image=image,
            gt_mask=gt_mask,
            gt_label=None if label == LabelName.UNKNOWN else torch.tensor(label),
            image_path=str(row.image_path),
            mask_path=str(row.mask_path) or None,
        )


class MedBMADDataset(MedImageDataset):
    """One split of one BMAD category.

    Args:
        root: Folder holding the category folders. Defaults to ``"./datasets/BMAD"``.
        category: BMAD category (MVFA name). Defaults to ``"Brain"``.
        split: ``train``, ``val`` or ``test``; ``None`` for all. Defaults to ``None``.
        augmentations: Joint image/mask augmentations. Defaults to ``None``.
    """

    def __init__(
        self,
        root: str | Path = "./datasets/BMAD",
        category: BMADCategory | str = "Brain",
        split: Split | str | None = None,
        augmentations: Transform | None = None,
    ) -> None:
        super().__init__(make_med_bmad_dataset(root, category, split), augmentations=augmentations)
        self.category = category


def read_fewshot_list(path: Path, iteration: int = 0) -> dict[int, list[str]]:
    """Parse an MVFA ``<K>-shot.txt`` file into ``{0: normal names, 1: abnormal names}`` for one iteration."""
    if not path.is_file():
        msg = f"Few-shot list {path} does not exist; copy MVFA's dataset/fewshot_seed/ there or set fewshot_dir."
        raise FileNotFoundError(msg)
    names: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        key, *files = line.split()
        if key in {f"n-{iteration}:", f"a-{iteration}:"}:
            names[int(key[0] == "a")] = files
    if set(names) != {0, 1}:
        msg = f"{path} lacks the 'n-{iteration}:' and 'a-{iteration}:' lines; choose another fewshot_iteration."
        raise ValueError(msg)
    return names


class MedBMAD(AnomalibDataModule):
    """BMAD category with BMAD's own splits, MVFA few-shot lists or MVFA's zero-shot leave-one-category-out.

    Args:
        root: Folder holding the category folders. Defaults to ``"./datasets/BMAD"``.
        category: BMAD category (MVFA name). Defaults to ``"Brain"``.
        train_batch_size: Training batch size. Defaults to ``32``.
        eval_batch_size: Validation/test batch size. Defaults to ``32``.
        num_workers: DataLoader workers. Defaults to ``8``.
        shots: Train on the K-shot list of MVFA (``K`` in 2, 4, 8, 16). Defaults to ``None`` (the ``train/`` split).
        fewshot_dir: Folder with ``<Category>/<K>-shot.txt``. Defaults to ``None`` (``<root>/fewshot_seed``).
        fewshot_iteration: The ``n-<i>``/``a-<i>`` line pair to use. Defaults to ``0``.
        leave_one_out: Train on the test images of the other categories (MVFA zero-shot), in batches of one category
            each, with masks for the segmentation categories. Defaults to ``False``.
        object_name: Object phrase for prompts. Defaults to ``None`` (MVFA's phrase of the category).
        train_augmentations: Train augmentations. Defaults to ``None``.
        val_augmentations: Validation augmentations. Defaults to ``None``.
        test_augmentations: Test augmentations. Defaults to ``None``.
        augmentations: Augmentations for every split without its own. Defaults to ``None``.
    """

    def __init__(
        self,
        root: str | Path = "./datasets/BMAD",
        category: BMADCategory | str = "Brain",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        shots: int | None = None,
        fewshot_dir: str | Path | None = None,
        fewshot_iteration: int = 0,
        leave_one_out: bool = False,
        object_name: str | None = None,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            val_split_mode=ValSplitMode.FROM_DIR,
            test_split_mode=TestSplitMode.FROM_DIR,
        )
        if category not in CATEGORY_ALIASES:
            msg = f"Unknown BMAD category {category!r}; expected one of {list(CATEGORY_ALIASES)}."
            raise ValueError(msg)
        if shots is not None and leave_one_out:
            msg = "shots and leave_one_out are exclusive (few-shot vs zero-shot protocol); set only one."
            raise ValueError(msg)
        self.root = Path(root)
        self.category = category
        self.shots, self.fewshot_iteration, self.leave_one_out = shots, fewshot_iteration, leave_one_out
        self.fewshot_dir = Path(fewshot_dir) if fewshot_dir is not None else self.root / "fewshot_seed"
        self._object_name = object_name

    @property
    def empty_train_split_reason(self) -> str | None:
        """Why the train split is empty (a release without ``train/``), for the error a model that trains raises."""
        if getattr(self, "train_data", None) is None or len(self.train_data) or not self._no_train_folder():
            return None
        return no_train_split_message(self.root, self.category)

    @property
    def object_name(self) -> str:
        """Object phrase for text prompts (MVFA's phrase unless given)."""
        return self._object_name or OBJECT_NAMES[self.category]

    def describe(self) -> dict[str, Any]:
        """What defines the data and its protocol in a report: absolute root, category, few-/zero-shot choice."""
        few_shot = self.shots is not None
        fewshot_list = self.fewshot_dir.resolve() / self.category / f"{self.shots}-shot.txt"
        return {
            "root": str(self.root.resolve()),
            "category": self.category,
            "shots": self.shots,
            "fewshot_list": str(fewshot_list) if few_shot else None,
            "fewshot_iteration": self.fewshot_iteration if few_shot else None,
            "leave_one_out": self.leave_one_out,
            "object_name": self.object_name,
        }

    def _train_samples(self, samples: pd.DataFrame) -> pd.DataFrame:
        """Train rows of the chosen protocol (BMAD train, K-shot list or the other categories' test sets)."""
        if self.leave_one_out:
            others = []
            for other in CATEGORY_ALIASES:
                if other == self.category:
                    continue
                try:
                    others.append(make_med_bmad_dataset(self.root, other, Split.TEST))
                except FileNotFoundError as err:
                    warnings.warn(f"Leave-one-out training skips {other}: {err}", stacklevel=3)
            if not others:
                msg = f"leave_one_out=True but no other BMAD category has a test split under {self.root}."
                raise FileNotFoundError(msg)
            train = pd.concat(others, ignore_index=True)
            # the pool's task says whether any of its items carries a mask; each row says whether its own does
            train.attrs["task"] = "segmentation" if train.segmentation.any() else "classification"
            return train.assign(split=Split.TRAIN.value)
        if self.shots is not None:
            listed = read_fewshot_list(
                self.fewshot_dir / self.category / f"{self.shots}-shot.txt", self.fewshot_iteration
            )
            val = samples[samples.split == Split.VAL.value]
            chosen = val[
                [Path(p).name in listed[label] for p, label in zip(val.image_path, val.label_index, strict=True)]
            ]
            if len(chosen) != sum(len(names) for names in listed.values()):
                msg = f"Only {len(chosen)} of the images listed for {self.shots}-shot {self.category} are in valid/."
                raise FileNotFoundError(msg)
            return chosen.assign(split=Split.TRAIN.value)
        return samples[samples.split == Split.TRAIN.value]

    def _no_train_folder(self) -> bool:
        """Whether the chosen protocol uses ``train/`` and the release has no such folder (the MVFA release)."""
        if self.shots is not None or self.leave_one_out:
            return False
        return not split_folder_exists(category_dir(self.root, self.category), Split.TRAIN.value)

    def _setup(self, _stage: str | None = None) -> None:
        """Build train/val/test; few-shot images are removed from validation.

        Without ``train/`` (and without ``shots``/``leave_one_out``) the train split is empty, for models that do not
        train; ``val`` and ``test`` must not be empty.
        """
        samples = make_med_bmad_dataset(self.root, self.category)
        train = self._train_samples(samples)
        splits = {
            Split.TRAIN: train,
            Split.VAL: samples[(samples.split == Split.VAL.value) & ~samples.image_path.isin(train.image_path)],
            Split.TEST: samples[samples.split == Split.TEST.value],
        }
        no_train = train.empty and self._no_train_folder()
        if no_train:
            logger.warning(
                "BMAD %s under %s has no train/ split (MVFA release): the train split is empty, so only models that "
                "do not train (zero-shot CLIP, an official checkpoint) can run; a model that trains needs shots=K "
                "or leave_one_out=True.",
                self.category,
                self.root,
            )
        for split, part in splits.items():
            if part.empty and not (split == Split.TRAIN and no_train):
                protocol = self.shots is not None or self.leave_one_out
                hint = " (its train/ folder holds no images)" if split == Split.TRAIN and not protocol else ""
                msg = f"The {split.value} split of BMAD {self.category} under {self.root} is empty{hint}."
                raise ValueError(msg)
            part = part.reset_index(drop=True)
            part.attrs = dict(train.attrs if split == Split.TRAIN else samples.attrs)
            setattr(self, f"{split.value}_data", MedImageDataset(part))

    def train_dataloader(self) -> TRAIN_DATALOADERS:
        """The shuffled train loader; leave-one-out: batches of one source category each; no ``train/``: empty.

        Leave-one-out pools images with masks (segmentation categories) and without, which anomalib's collate cannot
        stack in one batch; batches of one category (as MVFA's ``train_zero.py`` builds them) also never mix the
        categories' image sizes and leave room for per-category prompts. PyTorch's shuffling sampler refuses an empty
        dataset; a model that trains should refuse the empty split at the start of ``fit`` with
        :func:`no_train_split_message`.
        """
        if len(self.train_data) > 0:
            if self.leave_one_out:
                return grouped_train_loader(self, groups=self.train_data.samples.category.tolist())
            return super().train_dataloader()
        return DataLoader(
            dataset=self.train_data,
            shuffle=False,
            batch_size=self.train_batch_size,
            num_workers=0,
            collate_fn=self.external_collate_fn or self.train_data.collate_fn,
        )

    def _create_test_split(self) -> None:
        """Keep the test folder as it is (anomalib's ``split_by_label`` would reorder and copy it)."""
