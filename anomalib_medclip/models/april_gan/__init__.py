# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""APRIL-GAN (VAND 2023): linear adapters on CLIP patch tokens, prompt ensemble, few-shot memory bank."""

from anomalib_medclip.models.april_gan.lightning_model import VAND, AprilGAN
from anomalib_medclip.models.april_gan.torch_model import AprilGANModel

__all__ = ["VAND", "AprilGAN", "AprilGANModel"]
