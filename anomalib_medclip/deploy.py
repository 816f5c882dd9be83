# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Running exported models: anomalib's OpenVINO inferencer at full precision by default.

OpenVINO picks the inference precision when it compiles a model, not from the IR: on CPUs with bf16 (AVX512-BF16,
AMX) its default is bf16, which moves CLIP anomaly maps by 0.01-0.05 and can flip a thresholded lesion voxel. Medical
results should not depend on the CPU they ran on, so this inferencer asks for f32 unless told otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from anomalib.deploy import OpenVINOInferencer as _AnomalibOpenVINOInferencer

__all__ = ["OpenVINOInferencer"]

Precision = Literal["f32", "f16", "bf16", "device_default"]


class OpenVINOInferencer(_AnomalibOpenVINOInferencer):
    """anomalib's ``OpenVINOInferencer`` whose models run at ``precision`` (``f32`` by default) on every device.

    ``precision="device_default"`` keeps OpenVINO's choice (bf16 or f16 where the device has it: faster, less exact).
    An ``INFERENCE_PRECISION_HINT`` given in ``config`` wins over ``precision``.
    """

    def __init__(
        self,
        path: str | Path | tuple[bytes, bytes],
        device: str | None = "CPU",
        config: dict[str, Any] | None = None,
        precision: Precision = "f32",
    ) -> None:
        if precision not in get_args(Precision):
            msg = f"precision must be one of {', '.join(get_args(Precision))}; got {precision!r}."
            raise ValueError(msg)
        hint = {} if precision == "device_default" else {"INFERENCE_PRECISION_HINT": precision}
        super().__init__(path, device=device, config={**hint, **(config or {})})

    @property
    def inference_precision(self) -> str:
        """The precision the compiled model runs at (what OpenVINO reports), e.g. ``"f32"``."""
        return self.model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
