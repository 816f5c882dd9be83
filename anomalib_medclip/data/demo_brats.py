# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""A small synthetic BraTS-MET-style data set for demos, tests and CPU runs, generated offline from MNI152.

Each subject starts from the MNI152 template and its grey/white-matter probability maps shipped inside nilearn
(3 mm, no download), cropped to the brain. Per subject it adds a jittered affine (translation and voxel size),
every other subject stored in LPS order (so canonical reorientation is exercised), a smooth multiplicative bias
field, Rician-like noise, and 2 to 5 metastasis-like lesions (3 to 12 mm core radius, spread over the brain) with
BraTS-MET labels: 1 necrotic core, 3 enhancing rim, 2 surrounding oedema. All four modalities are written with a
plausible contrast each (T2w/FLAIR bright oedema, T1c bright enhancing rim, dark CSF on FLAIR).

The set is generated deterministically from ``seed`` into a temporary folder next to ``root`` and renamed into
place, so a crash never leaves a half-written set; ``demo_brats.json`` in the folder records the parameters.

Example:
    >>> from anomalib_medclip.data import DemoBraTS
    >>> datamodule = DemoBraTS(num_workers=0)  # doctest: +SKIP
    >>> datamodule.setup()  # generates datasets/demo_brats/ on first use  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nilearn import datasets as nilearn_datasets

from anomalib_medclip.data.brats import BraTS, Modality, OnError, SliceSelection
from anomalib_medclip.data.volume_slices import Channels

__all__ = ["DemoBraTS", "generate_demo_brats"]

MANIFEST = "demo_brats.json"
_FORMAT_VERSION = 1
# Tissue intensities per modality: csf, grey matter, white matter, oedema (2), necrosis (1), enhancing rim (3).
_CONTRASTS = {
    "t1n": (0.20, 0.55, 0.80, 0.45, 0.25, 0.50),
    "t1c": (0.20, 0.55, 0.80, 0.45, 0.25, 1.00),
    "t2w": (1.00, 0.55, 0.35, 0.85, 0.95, 0.65),
    "t2f": (0.10, 0.60, 0.45, 0.95, 0.40, 0.75),
}


def _template() -> tuple[np.ndarray, np.ndarray]:
    """Tissue fractions ``(3, X, Y, Z)`` (csf, gm, wm) of MNI152 at 3 mm cropped to the brain, and the affine."""
    mask_img = nilearn_datasets.load_mni152_brain_mask(resolution=3)
    mask = mask_img.get_fdata() > 0
    gm = nilearn_datasets.load_mni152_gm_template(resolution=3).get_fdata()
    wm = nilearn_datasets.load_mni152_wm_template(resolution=3).get_fdata()
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    tissues = np.stack([csf, gm, wm]) * mask
    lo = np.maximum(np.argwhere(mask).min(axis=0) - 2, 0)
    hi = np.argwhere(mask).max(axis=0) + 3
    crop = (slice(None), *(slice(a, b) for a, b in zip(lo, hi, strict=True)))
    affine = mask_img.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ lo
    return tissues[crop], affine


def _lesions(brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label map with 2-5 spherical-ish metastases (1 necrosis, 3 enhancing rim, 2 oedema) inside ``brain``."""
    grid = np.indices(brain.shape, dtype=np.float32)
    inner = np.argwhere(brain)
    seg = np.zeros(brain.shape, dtype=np.uint8)
    for _ in range(rng.integers(2, 6)):
        centre = inner[rng.integers(len(inner))]
        axes = rng.uniform(0.8, 1.25, size=3).astype(np.float32)
        radius = rng.uniform(1.0, 4.0)
        dist = np.sqrt(sum(((grid[i] - centre[i]) / axes[i]) ** 2 for i in range(3)))
        oedema = (dist <= radius * rng.uniform(1.6, 2.6)) & brain & (seg == 0)
        seg[oedema] = 2
        seg[dist <= radius] = 3
        if radius >= 2.0:
            seg[dist <= radius - 1.0] = 1
    return seg


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field ``1 + 0.2 * (random quadratic in normalised coordinates)``."""
    coords = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*coords, indexing="ij")
    terms = (x, y, z, x * y, y * z, x * z, x * x, y * y, z * z)
    field = sum(c * t for c, t in zip(rng.normal(0, 0.35, len(terms)), terms, strict=True))
    return 1.0 + 0.2 * np.tanh(field)


def _subject(tissues: np.ndarray, affine: np.ndarray, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """Label map and four modality arrays (canonical order) of one subject, and its jittered affine."""
    brain = tissues.sum(axis=0) > 0.5
    seg = _lesions(brain, rng)
    bias = _bias_field(brain.shape, rng)
    volumes = {"seg": seg}
    for modality, (c_csf, c_gm, c_wm, c_ed, c_nec, c_et) in _CONTRASTS.items():
        image = c_csf * tissues[0] + c_gm * tissues[1] + c_wm * tissues[2]
        for label, value in ((2, c_ed), (1, c_nec), (3, c_et)):
            image = np.where(seg == label, value, image)
        noise = rng.normal(0.0, 0.03, size=(2, *image.shape))
        image = np.sqrt((image * bias + noise[0]) ** 2 + noise[1] ** 2) * brain
        volumes[modality] = np.round(image * rng.uniform(700, 1300)).astype(np.int16)
    jittered = affine.copy()
    jittered[:3, :3] *= rng.uniform(0.95, 1.05, size=3)
    jittered[:3, 3] += rng.normal(0.0, 3.0, size=3)
    return volumes, jittered


def _write_subject(case_dir: Path, volumes: dict[str, np.ndarray], affine: np.ndarray, lps: bool) -> None:
    """Write ``<case>-<key>.nii.gz`` files, optionally stored in LPS voxel order (same world image)."""
    case_dir.mkdir()
    if lps:
        shape = next(iter(volumes.values())).shape
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [shape[0] - 1, shape[1] - 1]
        affine = affine @ flip
        volumes = {key: value[::-1, ::-1, :] for key, value in volumes.items()}
    for key, value in volumes.items():
        image = nib.Nifti1Image(np.ascontiguousarray(value), affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, case_dir / f"{case_dir.name}-{key}.nii.gz")


def generate_demo_brats(root: str | Path = "./datasets/demo_brats", n_subjects: int = 12, seed: int = 0) -> Path:
    """Generate the demo set into ``root`` unless it already holds one made with the same parameters.

    Args:
        root: Output folder (created atomically). Defaults to ``"./datasets/demo_brats"`` (relative to the CWD).
        n_subjects: Number of subjects ``BraTS-MET-00000-000`` ... Defaults to ``12``.
        seed: Generation seed; the same seed gives byte-identical files. Defaults to ``0``.

    Returns:
        The resolved ``root``.

    Raises:
        ValueError: If ``root`` exists but holds another set (different parameters or no manifest).
    """
    root = Path(root).resolve()
    params = {"format": _FORMAT_VERSION, "n_subjects": n_subjects, "seed": seed}
    if root.exists():
        manifest = root / MANIFEST
        if not manifest.is_file() or json.loads(manifest.read_text()) != params:
            msg = f"{root} exists but is not a demo set made with {params}; pass another root or delete that folder."
            raise ValueError(msg)
        return root
    if n_subjects < 1:
        msg = f"n_subjects={n_subjects}; expected at least 1."
        raise ValueError(msg)
    root.parent.mkdir(parents=True, exist_ok=True)
    tissues, affine = _template()
    rng = np.random.default_rng(seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for index in range(n_subjects):
            volumes, jittered = _subject(tissues, affine, rng)
            _write_subject(staging / f"BraTS-MET-{index:05d}-000", volumes, jittered, lps=index % 2 == 1)
        (staging / MANIFEST).write_text(json.dumps(params))
        os.rename(staging, root)
    except OSError:
        if not (root / MANIFEST).is_file():  # not a lost race against another process generating the same set
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


class DemoBraTS(BraTS):
    """:class:`BraTS` on the synthetic demo set, generated on first use (see :func:`generate_demo_brats`).

    Args:
        root: Demo folder. Defaults to ``"./datasets/demo_brats"`` (relative to the CWD).
        modality: Image modality. Defaults to ``"t2w"``.
        n_subjects: Subjects to generate. Defaults to ``12``.
        generation_seed: Seed of the generated data. Defaults to ``0``.
        train_batch_size: Training batch size. Defaults to ``32``.
        eval_batch_size: Evaluation batch size. Defaults to ``32``.
        num_workers: DataLoader workers. Defaults to ``2``.
        test_ratio: Fraction of test subjects. Defaults to ``0.3``.
        val_ratio: Fraction of validation subjects. Defaults to ``0.1``.
        slices: Train slice selection. Defaults to ``"all"``.
        eval_slices: Val/test slice selection. Defaults to ``"all"``.
        on_error: ``"raise"`` or ``"skip"`` unreadable cases. Defaults to ``"raise"``.
        seed: Seed of the subject split. Defaults to ``0``.
        planes: Val/test slice planes (see :class:`BraTS`). Defaults to ``None`` (axial).
        channels: ``repeat``, ``adjacent`` or ``sequences`` (see :class:`BraTS`). Defaults to ``"repeat"``.
        sequences: The three modalities of ``channels='sequences'``. Defaults to ``None``.
        train_planes: Train slice planes (see :class:`BraTS`). Defaults to ``None`` (axial).
    """

    def __init__(
        self,
        root: str | Path = "./datasets/demo_brats",
        modality: Modality | str = "t2w",
        n_subjects: int = 12,
        generation_seed: int = 0,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 2,
        test_ratio: float = 0.3,
        val_ratio: float = 0.1,
        slices: SliceSelection = "all",
        eval_slices: SliceSelection = "all",
        on_error: OnError = "raise",
        seed: int = 0,
        planes: list[str] | None = None,
        channels: Channels = "repeat",
        sequences: list[str] | None = None,
        train_planes: list[str] | None = None,
    ) -> None:
        super().__init__(
            root=root,
            modality=modality,
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            test_ratio=test_ratio,
            val_ratio=val_ratio,
            slices=slices,
            eval_slices=eval_slices,
            on_error=on_error,
            seed=seed,
            planes=planes,
            channels=channels,
            sequences=sequences,
            train_planes=train_planes,
        )
        self.n_subjects = n_subjects
        self.generation_seed = generation_seed

    def describe(self) -> dict[str, Any]:
        """:meth:`BraTS.describe`, plus what generated the data (a synthetic set: never a result)."""
        return {**super().describe(), "n_subjects": self.n_subjects, "generation_seed": self.generation_seed}

    def prepare_data(self) -> None:
        """Generate the demo set if it is not there yet (main process only, as Lightning calls it)."""
        generate_demo_brats(self.root, self.n_subjects, self.generation_seed)

    def _setup(self, _stage: str | None = None) -> None:
        """Generate if needed (for ``setup()`` called without ``prepare_data``), then split as :class:`BraTS`."""
        self.prepare_data()
        super()._setup(_stage)
