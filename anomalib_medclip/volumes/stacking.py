# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Regrouping slice predictions into volumes, 3D post-processing, and atomic writers.

Slices are placed by their ``slice_index`` (never by loader order), resized back to the native in-plane size of the
source volume (bilinear) and turned back from the served 2D image orientation to the canonical (RAS+) voxel grid with
:func:`~anomalib_medclip.data.nifti.image_to_slice`. Slices that were not served (e.g. outside a slice selection)
stay 0. Files are written to a temporary name in the target folder and renamed, so a crash never leaves a
half-written file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from anomalib_medclip.data.nifti import NiftiSpace, image_to_slice, slice_to_image
from anomalib_medclip.utils import write_atomic

__all__ = ["postprocess_volume", "remove_small_components", "stack_slices", "write_nifti"]


def stack_slices(maps: Mapping[int, np.ndarray], canonical_shape: tuple[int, int, int]) -> np.ndarray:
    """Stack per-slice maps ``{z: (h, w)}`` (model resolution, served orientation) into a canonical ``(X, Y, Z)``."""
    x, y, z_size = canonical_shape
    native_hw = slice_to_image(np.empty((x, y), dtype=bool)).shape
    volume = np.zeros(canonical_shape, dtype=np.float32)
    zs = sorted(maps)
    if not zs:
        return volume
    if zs[0] < 0 or zs[-1] >= z_size:
        msg = f"Slice index {zs[0] if zs[0] < 0 else zs[-1]} is outside the volume's {z_size} axial slices."
        raise ValueError(msg)
    stack = torch.from_numpy(np.stack([np.asarray(maps[z], dtype=np.float32) for z in zs]))[:, None]
    if tuple(stack.shape[-2:]) != native_hw:  # one batched resize for the whole volume
        stack = F.interpolate(stack, size=native_hw, mode="bilinear", align_corners=False)
    volume[:, :, zs] = image_to_slice(np.moveaxis(stack[:, 0].numpy(), 0, -1))  # (H, W, n) -> (X, Y, n)
    return volume


def postprocess_volume(score: np.ndarray, sigma: float = 0.0) -> np.ndarray:
    """Optional 3D Gaussian smoothing (sigma in voxels; 0 = off) of a stacked map."""
    return ndimage.gaussian_filter(score, sigma=sigma) if sigma > 0 else score


def remove_small_components(mask: np.ndarray, min_voxels: int = 0) -> np.ndarray:
    """Drop 26-connected components with fewer than ``min_voxels`` voxels (0 = off)."""
    if min_voxels <= 0 or not mask.any():
        return mask
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, space: NiftiSpace | None = None) -> Path:
    """Write ``array`` (already in the source file's voxel order) with ``affine``, atomically.

    With the source's ``space`` the file keeps its qform and sform (matrices and codes) and its units, so viewers
    place it in the same space as the scan (nibabel alone would write qform code 0 and units "unknown"). A source
    with neither form coded keeps nibabel's default (``affine`` as an "aligned" sform), which is where ``nib.load``
    placed the source.
    """
    image = nib.Nifti1Image(array, affine)
    image.header.set_data_dtype(array.dtype)
    if space is not None:
        if space.qform_code or space.sform_code:
            image.set_qform(space.qform, code=space.qform_code)
            image.set_sform(space.sform, code=space.sform_code)
        image.header.set_xyzt_units(*space.units)
    return write_atomic(path, lambda tmp: nib.save(image, tmp))
