# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The ``hf-hub:`` BiomedCLIP route offline, on a synthetic Hugging Face cache (subprocesses).

BiomedCLIP's weights cannot be downloaded here, so the test writes a cache in the hub's layout under BiomedCLIP's
repository ids, holding ``BiomedCLIP-tiny-test``'s config and the weights of a seeded tiny model (not BiomedCLIP's):
the backbone must build from it offline with those weights and the cached BERT tokenizer, and name the text tower's
repository when that one is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from anomalib_medclip.backbones import CLIPBackbone, loading

BIOMEDCLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
PUBMEDBERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
COMMIT = "0" * 40
LOAD = (
    f"from anomalib_medclip.backbones import CLIPBackbone\nb = CLIPBackbone('hf-hub:{BIOMEDCLIP}', None)\n"
    "print(b.fingerprint, b.info.source, tuple(b.encode_fixed_text(['a photo of a normal brain MRI scan']).shape))\n"
)


def _repo(cache: Path, repo_id: str) -> Path:
    """A snapshot folder of ``repo_id`` with ``refs/main`` pointing at it, as huggingface_hub lays them out."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def _cache(root: Path) -> tuple[Path, str]:
    tiny = Path(loading.__file__).parent / "configs" / loading.TINY_BIOMED_BACKBONE
    bert = _repo(root, PUBMEDBERT)
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(tiny / name, bert / name)
    clip = _repo(root, BIOMEDCLIP)
    config = json.loads((tiny / "model.json").read_text())
    config["text_cfg"].update(hf_model_name=PUBMEDBERT, hf_tokenizer_name=PUBMEDBERT)
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    model = CLIPBackbone(loading.TINY_BIOMED_BACKBONE, None, seed=5)
    torch.save(model.clip.state_dict(), clip / "open_clip_pytorch_model.bin")
    return root, model.fingerprint


def _load(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=300)


def test_biomedclip_hub_id_builds_offline_from_the_cache(tmp_path: Path) -> None:
    cache, fingerprint = _cache(tmp_path / "hub")
    assert fingerprint != CLIPBackbone(loading.TINY_BIOMED_BACKBONE, None).fingerprint  # seed 5, not the default
    proc = _load(cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == fingerprint  # the cached weights, not a random initialisation
    assert f"cache ({BIOMEDCLIP})" in proc.stdout
    assert proc.stdout.strip().endswith("(1, 32)")  # the cached WordPiece tokenizer and BERT ran


def test_missing_text_tower_repository_is_named(tmp_path: Path) -> None:
    cache, _ = _cache(tmp_path / "hub")
    shutil.rmtree(cache / f"models--{PUBMEDBERT.replace('/', '--')}")
    proc = _load(cache)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "WeightsUnavailableError" in last
    assert f"text tower's repository '{PUBMEDBERT}' is not in the HF cache" in last
    assert "BiomedCLIP-tiny-test" in last
