# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Slice visualiser: anomalib's image overlays for slices of volumes, named after volume and slice.

anomalib's ``ImageVisualizer`` opens ``image_path`` with PIL (a ``.nii.gz`` volume cannot be opened) and names files
after it (every slice of a volume would overwrite one file). :class:`SliceVisualizer` renders slice batches from the
tensors instead — the image de-normalised with the model's own pre-processing statistics — with anomalib's
``visualize_image_item``, and saves ``<images>/<volume_id>_z<slice>.png``. Per volume it keeps at most
``max_slices_per_volume`` files: lesion slices (ground truth, or predicted label when there is none) until the quota is
full, and normal slices only up to a quarter of it, in slice order. Batches without ``volume_id`` go to anomalib's own
behaviour.

Under DDP the choice does not depend on which process serves which slice: when the datamodule's slice table has
labels, the slices to render are chosen from it at start (the same ones a single process would keep), each process
renders the chosen slices it serves, into rank 0's output folder, and files are written atomically. Without labels
(prediction), the quota is counted per process.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from anomalib.data import ImageItem
from anomalib.data.utils import LabelName
from anomalib.visualization import ImageVisualizer
from anomalib.visualization.image.item_visualizer import visualize_image_item
from torchvision.transforms.v2 import Compose, Normalize

from anomalib_medclip.utils import write_atomic

__all__ = ["SliceVisualizer"]


def _normalize_stats(pl_module: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    transform = getattr(getattr(pl_module, "pre_processor", None), "transform", None)
    steps = transform.transforms if isinstance(transform, Compose) else [transform]
    for step in steps:
        if isinstance(step, Normalize):
            return torch.tensor(step.mean).view(3, 1, 1), torch.tensor(step.std).view(3, 1, 1)
    return None


class SliceVisualizer(ImageVisualizer):
    """Overlays of volume slices (image, ground truth, anomaly map, prediction).

    Args:
        max_slices_per_volume: files kept per volume (``None``: every slice).
        **kwargs: passed to anomalib's ``ImageVisualizer`` (fields, overlays, sizes, ``output_dir``).
    """

    def __init__(self, max_slices_per_volume: int | None = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_slices_per_volume is not None and max_slices_per_volume < 1:
            msg = f"max_slices_per_volume={max_slices_per_volume}; expected None or at least 1."
            raise ValueError(msg)
        self.max_slices_per_volume = max_slices_per_volume
        self._saved: Counter[str] = Counter()
        self._saved_normal: Counter[str] = Counter()
        self._plan: dict[str, set[int]] = {}
        self._dir: Path | None = None

    def _keep(self, volume_id: str, lesion: bool) -> bool:
        limit = self.max_slices_per_volume
        if limit is None:
            return True
        if self._saved[volume_id] >= limit or (not lesion and self._saved_normal[volume_id] >= max(1, limit // 4)):
            return False
        self._saved[volume_id] += 1
        self._saved_normal[volume_id] += not lesion
        return True

    def _planned(self, samples: Any) -> dict[str, set[int]]:
        """Slices to render per fully labelled volume of a slice table, as the in-order quota would choose them."""
        if samples is None or not {"volume_id", "slice_index", "label_index"} <= set(samples.columns):
            return {}
        plan: dict[str, set[int]] = {}
        keys = samples.volume_id.astype(str)
        if "plane" in samples.columns:  # a volume's other planes are rendered under their own key
            keys = keys.where(samples.plane == "axial", keys + "_" + samples.plane.astype(str))
        ordered = samples.assign(_key=keys).sort_values("slice_index", kind="stable")
        for volume_id, rows in ordered.groupby("_key", sort=False):
            if (rows.label_index != LabelName.UNKNOWN).all():
                lesion = rows.label_index == LabelName.ABNORMAL
                plan[str(volume_id)] = {
                    int(z) for z, hit in zip(rows.slice_index, lesion, strict=True) if self._keep(str(volume_id), hit)
                }
        self._saved.clear()
        self._saved_normal.clear()
        return plan

    def _render(self, trainer: Any, pl_module: Any, batch: Any) -> None:
        output_dir = self._dir or Path(self.output_dir or Path(trainer.default_root_dir) / "images")
        output_dir.mkdir(parents=True, exist_ok=True)
        stats = _normalize_stats(pl_module)
        channel = getattr(getattr(trainer, "datamodule", None), "reference_channel", None)
        planes = getattr(batch, "plane", None)
        for index, item in enumerate(batch):
            volume_id, z = batch.volume_id[index], int(batch.slice_index[index])
            if planes and planes[index] != "axial":  # e.g. case_coronal_z040.png
                volume_id = f"{volume_id}_{planes[index]}"
            label = item.gt_label if item.gt_label is not None else item.pred_label
            if volume_id in self._plan:
                if z not in self._plan[volume_id]:
                    continue
            elif not self._keep(volume_id, bool(label is not None and label)):
                continue
            image = item.image.detach().float().cpu()
            image = (image * stats[1] + stats[0]).clamp(0, 1) if stats is not None else image.clamp(0, 1)
            if channel is not None:  # 2.5D / multi-sequence input: show the slice itself (centre / reference)
                image = image[channel : channel + 1].expand(3, -1, -1)
            fields = {f: getattr(item, f) for f in ("gt_mask", "anomaly_map", "pred_mask", "gt_label", "pred_label")}
            plain = ImageItem(image=image, pred_score=item.pred_score, **fields)
            rendered = visualize_image_item(
                plain,
                fields=self.fields,
                overlay_fields=self.overlay_fields,
                field_size=self.field_size,
                fields_config=self.fields_config,
                overlay_fields_config=self.overlay_fields_config,
                text_config=self.text_config,
            )
            if rendered is not None:
                write_atomic(
                    output_dir / f"{volume_id}_z{z:03d}.png", lambda tmp, r=rendered: r.save(tmp, format="PNG")
                )

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        """Render slice batches; other batches as anomalib does."""
        if getattr(batch, "volume_id", None) is None:
            super().on_test_batch_end(trainer, pl_module, outputs, batch, *args)
        else:
            self._render(trainer, pl_module, batch)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        """Same as test."""
        self.on_test_batch_end(trainer, pl_module, outputs, batch, *args)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """Start per-volume quotas afresh; plan them from the slice table; take rank 0's output folder."""
        del pl_module
        self._saved.clear()
        self._saved_normal.clear()
        data = getattr(getattr(trainer, "datamodule", None), "test_data", None)
        self._plan = self._planned(getattr(data, "samples", None))
        output = str(self.output_dir or Path(trainer.default_root_dir) / "images")
        # anomalib's versioned workspace is created per process (rank 1 may get v1 while rank 0 has v0): use rank 0's
        self._dir = Path(trainer.strategy.broadcast(output, src=0) if trainer.world_size > 1 else output)

    on_predict_start = on_test_start
