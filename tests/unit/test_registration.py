# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The plugin in anomalib's registry, in process. The stock ``anomalib`` command (subprocesses) is tested in
``tests/integration/test_registration.py``."""

from __future__ import annotations

import pytest


def test_anomalib_get_model_finds_plugin_by_short_name() -> None:
    from anomalib.models import get_model

    model = get_model("VanillaCLIP", backbone="ViT-tiny-test", pretrained=None, image_size=32)
    assert type(model).__module__ == "anomalib_medclip.models.vanilla_clip.lightning_model"


@pytest.mark.parametrize(("argv", "seed"), [(["--seed_everything", "3"], 3), (["--seed_everything=5"], 5), ([], None)])
def test_fallback_cli_reads_seed(argv: list[str], seed: int | None) -> None:
    from anomalib_medclip.cli import _seed_from_argv

    assert _seed_from_argv(["train", *argv]) == seed
