# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``MedCLIPModuleMixin.seed_run``: the model seeds an unseeded run, keeps a caller's seed, re-seeds its own."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything


def test_seed_run_seeds_unless_the_caller_did(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
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
