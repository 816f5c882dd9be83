# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``MedCLIPModuleMixin.seed_run``: the model seeds an unseeded run, keeps a caller's seed, re-seeds its own."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything

from anomalib_medclip.models.components import module


def test_seed_run_seeds_unless_the_caller_did(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "_INHERITED_SEED", None)
    monkeypatch.setenv("PL_GLOBAL_SEED", "")  # records the original state, restored after the test
    monkeypatch.delenv("PL_GLOBAL_SEED")
    model = tiny_model("VanillaCLIP", seed=5)
    model.seed_run()
    first = torch.rand(3)
    torch.rand(7)  # the run moves the generator on; a second fit in the same process starts from the seed again
    model.seed_run()
    assert torch.equal(torch.rand(3), first)
    assert torch.equal(first, torch.rand(3, generator=torch.Generator().manual_seed(5)))

    seed_everything(11, verbose=False)  # the caller's seed wins
    model.seed_run()
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(11)))


def test_seed_run_applies_a_seed_inherited_from_the_environment(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``PL_GLOBAL_SEED`` a parent process left in the environment seeds nothing by itself: the run applies it."""
    monkeypatch.setattr(module, "_INHERITED_SEED", "7")
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    torch.manual_seed(123)  # the state a process that never seeded could be in
    tiny_model("VanillaCLIP", seed=5).seed_run()
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(7)))


def test_exported_pre_processing_is_the_in_loop_transform(tiny_model) -> None:
    pre_processor = tiny_model("VanillaCLIP").pre_processor
    images = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert pre_processor.transform.transforms[0].antialias  # antialiased bicubic in the Engine loops ...
    torch.testing.assert_close(pre_processor(images), pre_processor.transform(images), atol=0, rtol=0)  # ... exported


def test_onnx_export_without_the_extra_names_it(tiny_model, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"needs onnxscript: `pip install 'anomalib-medclip\[export\]'`"):
        tiny_model("VanillaCLIP").to_onnx(tmp_path)
