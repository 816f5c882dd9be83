# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""A predicted mask as a DICOM-SEG over its source DICOM series (highdicom, optional extra ``dicom``).

The segmentation has one frame per source instance, in the series' slice order (empty frames are kept, so frame
``k`` is the mask of instance ``k`` and references it), one binary segment "anomaly" (SNOMED *Morphologically
abnormal structure* / *Lesion*, algorithm type AUTOMATIC) whose algorithm identification carries the model's name,
the package version and the threshold; the same three are in ``ContentDescription`` and ``SeriesDescription``, so a
PACS or 3D Slicer user sees what made the mask. It lands in the same study and frame of reference as the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import anomalib_medclip
from anomalib_medclip.data.dicom import series_geometry
from anomalib_medclip.data.nifti import Volume, to_source_orientation
from anomalib_medclip.utils import write_atomic

__all__ = ["seg_description", "write_dicom_seg"]

_SEG_SERIES_NUMBER = 9900
"""Series number of the segmentation (high, so that it sorts after the acquisitions in a viewer)."""


def _highdicom() -> Any:
    """The ``highdicom`` module, or an ``ImportError`` that names the extra to install."""
    try:
        import highdicom
    except ImportError as err:
        msg = 'Writing DICOM-SEG needs highdicom: pip install "anomalib-medclip[dicom]".'
        raise ImportError(msg) from err
    return highdicom


def seg_description(model_name: str, threshold: float) -> str:
    """``<model> anomalib-medclip <version> thr <threshold>``, cut to DICOM's 64 characters (LO)."""
    return f"{model_name} anomalib-medclip {anomalib_medclip.__version__} thr {threshold:.3g}"[:64]


def write_dicom_seg(path: Path, mask: np.ndarray, image: Volume, model_name: str, threshold: float) -> Path:
    """Write ``mask`` (canonical order, on ``image``'s grid) as a binary DICOM-SEG referencing ``image``'s series.

    Args:
        path: The ``.dcm`` file to write (atomically).
        mask: Boolean predicted mask in canonical (RAS+) order.
        image: The source scan, read from a DICOM series (``image.series`` is set).
        model_name: The model's name, recorded as the segmentation algorithm.
        threshold: The threshold that made the mask, recorded with it.

    Returns:
        ``path``.
    """
    hd = _highdicom()
    from pydicom import dcmread
    from pydicom.sr.codedict import codes

    sources = [dcmread(file) for file in series_geometry(image.path).files]  # sorted along the slice normal
    frames = to_source_orientation(mask.astype(np.uint8), image.source_affine).transpose(2, 1, 0)  # (k, row, col)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_name,
        family=codes.cid7162.ArtificialIntelligence,
        version=anomalib_medclip.__version__,
        parameters={"threshold": f"{threshold:.6g}"},
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="anomaly",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    description = seg_description(model_name, threshold)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.ascontiguousarray(frames),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=_SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="anomalib-medclip",
        manufacturer_model_name=model_name[:64],
        software_versions=anomalib_medclip.__version__,
        device_serial_number="0",
        content_description=description,
        content_label="ANOMALY",
        omit_empty_frames=False,
    )
    seg.SeriesDescription = description
    return write_atomic(path, lambda tmp: seg.save_as(tmp))
