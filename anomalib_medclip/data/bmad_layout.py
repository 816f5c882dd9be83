# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Find the images and masks of one BMAD category whatever the release layout, and read them without saturation.

Layouts in circulation (all handled, names matched case-insensitively):

- category folder: any alias, e.g. ``BraTS2021_slice``/``Brain_AD``/``Brain`` (see ``CATEGORY_ALIASES``);
- split folder: ``train``; ``valid``/``val``/``validation``; ``test``; also nested (``Val/val``, ``test/test``);
- images: ``<split>/<good|Ungood>/img/*``, flat ``<split>/<good|Ungood>/*`` or ``<split>/img/<good|Ungood>/*``;
- masks: ``<split>/<label>/{label,anomaly_mask,mask,masks,ground_truth}/*``, ``<split>/{label,...}/<label>/*`` or
  a sibling ``<split>_label[s]/<label>/*`` (RESC ``Val/val_label/Ungood``);
- any torchvision image extension (``.png``, ``.jpeg``, ...). Masks pair with images by file stem only, so two files
  with one stem in a folder (``a0.png`` + ``a0.jpg``) are refused.

Masks mean ``value > 0``, except lossy (JPEG) masks, whose compression ringing would count as lesion: those are
binarised at half range (``>= 128`` of 255, MVFA's ``> 0.5``). A truncated or corrupt file raises an ``OSError`` that
names it.

Example:
    >>> from pathlib import Path
    >>> category_dir(Path("datasets/BMAD"), "Brain")  # doctest: +SKIP
    PosixPath('datasets/BMAD/Brain_AD')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = [
    "CATEGORY_ALIASES",
    "LOSSY_FORMATS",
    "category_dir",
    "find_split",
    "image_header",
    "read_med_image",
    "read_med_mask",
    "split_folder_exists",
]

CATEGORY_ALIASES: dict[str, tuple[str, ...]] = {
    "Brain": ("Brain", "Brain_AD", "BraTS2021_slice", "BrainMRI"),
    "Liver": ("Liver", "Liver_AD", "hist_DIY", "LiverCT"),
    "Retina_RESC": ("Retina_RESC", "Retina_RESC_AD", "RESC"),
    "Retina_OCT2017": ("Retina_OCT2017", "Retina_OCT2017_AD", "OCT2017", "OCT17"),
    "Chest": ("Chest", "Chest_AD", "Chest-RSNA", "ChestXray", "RSNA"),
    "Histopathology": ("Histopathology", "Histopathology_AD", "camelyon16_256", "camelyon16", "HIS"),
}
SPLIT_NAMES = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}
LABEL_DIRS = {"good": 0, "ungood": 1}
MASK_DIRS = ("label", "anomaly_mask", "mask", "masks", "ground_truth")
_EXTENSIONS = tuple(e.lower() for e in IMG_EXTENSIONS)
# PIL formats whose compression alters pixel values (MPO is PIL's name for multi-picture JPEG files).
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})


def _child(parent: Path, names: tuple[str, ...]) -> Path | None:
    """First sub-folder of ``parent`` whose lower-cased name is in ``names`` (in the order of ``names``)."""
    if not parent.is_dir():
        return None
    children = {p.name.lower(): p for p in parent.iterdir() if p.is_dir()}
    return next((children[n.lower()] for n in names if n.lower() in children), None)


def category_dir(root: Path, category: str) -> Path:
    """The folder of ``category`` under ``root`` (or ``root`` itself if it is one), trying every alias."""
    aliases = CATEGORY_ALIASES.get(category)
    if aliases is None:
        msg = f"Unknown BMAD category {category!r}; expected one of {list(CATEGORY_ALIASES)}."
        raise ValueError(msg)
    if not root.is_dir():
        msg = f"BMAD root {root} does not exist. Point `root` at the folder holding the category folders."
        raise FileNotFoundError(msg)
    found = _child(root, aliases)
    if found is not None:
        return found
    if root.name.lower() in {a.lower() for a in aliases}:
        return root
    msg = f"No folder for BMAD category {category!r} in {root}; looked for {list(aliases)}."
    raise FileNotFoundError(msg)


def _has_labels(folder: Path) -> bool:
    """Whether ``folder`` holds ``good``/``Ungood`` folders, directly or under ``img/``."""
    return _child(folder, tuple(LABEL_DIRS)) is not None or _child(folder / "img", tuple(LABEL_DIRS)) is not None


def split_folder_exists(category_path: Path, split: str) -> bool:
    """Whether the category folder has a folder named like ``split`` at all (even one without images)."""
    return _child(category_path, SPLIT_NAMES[split]) is not None


def find_split(category_path: Path, split: str) -> Path | None:
    """Split folder (``valid``, ``val``, ``Val/val``, ``test/test``, ...) or ``None`` if the release has none."""
    names = SPLIT_NAMES[split]
    folder = _child(category_path, names)
    if folder is None:
        return None
    if _has_labels(folder):
        return folder
    return _child(folder, names)


def _image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; two files with one stem are an error (pairing is by stem)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _EXTENSIONS)
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    clashes = [paths for paths in by_stem.values() if len(paths) > 1]
    if clashes:
        names = " and ".join(str(p) for p in clashes[0])
        more = f" ({len(clashes)} stems in all)" if len(clashes) > 1 else ""
        msg = (
            f"Two files with the stem {clashes[0][0].stem!r} in {folder}: {names}{more}. Images and masks pair by "
            "file stem, so both images would get the same mask (or one mask would hide the other) and the image "
            "would count twice. Keep one of them and move the other out of the dataset folder."
        )
        raise ValueError(msg)
    return files


def label_folders(split_path: Path, label: str) -> tuple[Path | None, Path | None]:
    """``(image folder, mask folder)`` of ``label`` (``good`` or ``ungood``) in a split folder; ``None`` if absent."""
    label_path = _child(split_path, (label,))
    images = _child(label_path, ("img",)) if label_path else None
    if images is None:
        images = _child(split_path / "img", (label,)) or label_path
    masks = _child(label_path, MASK_DIRS) if label_path else None
    siblings = [split_path.parent / f"{split_path.name}{suffix}" for suffix in ("_label", "_labels", "_mask")]
    for candidate in [*(split_path / name for name in MASK_DIRS), *siblings]:
        masks = masks or _child(candidate, (label,))
    return images, masks


def pair_masks(images: list[Path], mask_folder: Path | None) -> list[Path | None]:
    """Mask of each image by exact file stem; a mask without an image is an error."""
    if mask_folder is None:
        return [None] * len(images)
    masks = {p.stem: p for p in _image_files(mask_folder)}
    orphans = sorted(set(masks) - {p.stem for p in images})
    if orphans:
        msg = f"Masks without an image in {mask_folder}: {orphans[:5]} ({len(orphans)} in all). Remove them."
        raise ValueError(msg)
    return [masks.get(p.stem) for p in images]


def list_images(folder: Path | None) -> list[Path]:
    """Image files of a label folder (empty when the folder is absent)."""
    return _image_files(folder) if folder is not None else []


def _to_unit_range(array: np.ndarray) -> np.ndarray:
    """Scale an integer image by its dtype range (uint8 by 255, uint16 by 65535) into float32 [0, 1]."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        top = 65535.0 if array.dtype.itemsize > 1 else 255.0
        return np.clip(array.astype(np.float32) / top, 0.0, 1.0)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def _corrupt(path: Path, error: Exception) -> OSError:
    """The error for a file PIL cannot decode, naming it and the fix."""
    msg = (
        f"Image file {path} is truncated or corrupt ({error}). Re-extract or re-download it from the dataset "
        "release, or move it out of the dataset folder (the split then has one image less)."
    )
    return OSError(msg)


def _open(path: Path) -> Image.Image:
    """``Image.open`` whose error for an unreadable header names the file and the fix (missing files raise as usual)."""
    try:
        return Image.open(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError, "Truncated File Read", ...
        raise _corrupt(path, err) from err


def image_header(path: str | Path) -> tuple[tuple[int, int], str | None]:
    """``(size, PIL format)`` of an image file, read from its header only."""
    with _open(Path(path)) as image:
        return image.size, image.format


def _pixels(path: Path) -> tuple[np.ndarray, str | None]:
    """Pixel array without alpha (16-bit modes keep their full range) and the file's PIL format."""
    with _open(path) as image:
        file_format = image.format
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as err:  # PIL: "image file is truncated", "broken data stream"
            raise _corrupt(path, err) from err
        if image.mode in {"P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}:
            image = image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "RGB")
        array = np.asarray(image)
        mode = image.mode
    if mode in {"RGBA", "LA"}:
        array = array[..., :-1]
    if mode.startswith("I;16") or (mode == "I" and array.max(initial=0) <= 65535):
        array = array.astype(np.uint16)
    return array, file_format


def read_med_image(path: str | Path) -> torch.Tensor:
    """Read an image as a ``(3, H, W)`` float tensor in [0, 1] (RGBA -> RGB, grey repeated, 16-bit unsaturated)."""
    array = _to_unit_range(_pixels(Path(path))[0])
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    elif array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def read_med_mask(path: str | Path) -> torch.Tensor:
    """Read a mask as a ``(H, W)`` bool tensor: any colour channel > 0 (alpha ignored).

    A lossy (JPEG) mask is binarised at half range instead (``>= 128`` of 255), since its compression ringing around
    a lesion is > 0 too; :func:`anomalib_medclip.data.make_med_bmad_dataset` warns about such mask folders.
    """
    array, file_format = _pixels(Path(path))
    hit = _to_unit_range(array) > 0.5 if file_format in LOSSY_FORMATS else array > 0
    mask = hit if hit.ndim == 2 else hit.any(axis=-1)
    return torch.from_numpy(np.ascontiguousarray(mask))
