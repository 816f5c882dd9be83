# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The package's layering, read from the source (AST, nothing is imported).

- a model package (``anomalib_medclip/models/<name>/``) never imports another model package: what several models
  share lives in ``models/components`` (which imports no model package itself); ``models/__init__.py`` lists them all;
- only ``anomalib_medclip/backbones/`` imports ``open_clip`` or ``transformers``;
- models never reach into the backbone's open_clip model (``backbone.clip``): they run on every tower kind (open_clip
  or timm ViT, CLIP or BERT text) only through :class:`~anomalib_medclip.backbones.CLIPBackbone`'s methods;
- ``data/`` and ``volumes/`` never import ``anomalib_medclip.models``.

Every import counts, also one inside a function. The rules are checked on synthetic sources too, so that a test that
cannot fail does not pass unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "anomalib_medclip"
ROOT = "anomalib_medclip"
MODEL_PACKAGES = frozenset(
    p.name for p in (PACKAGE / "models").iterdir() if (p / "__init__.py").is_file() and p.name != "components"
)


def _module_name(relative: Path) -> str:
    """``models/ada_clip/torch_model.py`` -> ``anomalib_medclip.models.ada_clip.torch_model``."""
    parts = [ROOT, *relative.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(module: str, source: str, *, is_package: bool = False) -> set[str]:
    """Absolute names of what ``source`` imports; ``from a import b`` gives ``a`` and ``a.b`` (b may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(f"{prefix}.")


def violations(relative: Path, source: str) -> list[str]:
    """The layering rules ``source`` (the file ``anomalib_medclip/<relative>``) breaks, one line each."""
    module = _module_name(relative)
    found = []
    parts = relative.parts
    for name in sorted(imported_modules(module, source, is_package=relative.name == "__init__.py")):
        for library in ("open_clip", "transformers"):
            if _within(name, library) and parts[0] != "backbones":
                found.append(f"{module} imports {name}: only anomalib_medclip.backbones may import {library}")
        if parts[0] in {"data", "volumes"} and _within(name, f"{ROOT}.models"):
            found.append(f"{module} imports {name}: {parts[0]}/ must not depend on the models")
        if parts[0] == "models" and len(parts) > 2:  # inside models/<own>/
            own = parts[1]
            others = {f"{ROOT}.models.{other}" for other in MODEL_PACKAGES if other != own}
            if name == f"{ROOT}.models" or any(_within(name, other) for other in others):
                found.append(f"{module} imports {name}: models/{own}/ must not import another model package")
    if parts[0] == "models":
        for node in ast.walk(ast.parse(source)):
            value = node.value if isinstance(node, ast.Attribute) and node.attr == "clip" else None
            if getattr(value, "id", getattr(value, "attr", None)) == "backbone":  # backbone.clip, self.backbone.clip
                found.append(f"{module} line {node.lineno} reads backbone.clip: use the CLIPBackbone's methods")
    return found


def _sources() -> list[Path]:
    return sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py"))


def test_the_rules_see_the_package() -> None:
    assert {"ada_clip", "ano_vl", "anomaly_clip", "april_gan", "cross_modal_clip", "vanilla_clip"} <= MODEL_PACKAGES
    sources = _sources()
    assert Path("models/components/module.py") in sources
    assert Path("backbones/clip.py") in sources
    assert any(
        _within(n, "open_clip")
        for p in sources
        if p.parts[0] == "backbones"
        for n in imported_modules(_module_name(p), (PACKAGE / p).read_text())
    )  # the rule on open_clip has something to find


@pytest.mark.parametrize("relative", _sources(), ids=str)
def test_module_follows_the_layering(relative: Path) -> None:
    assert violations(relative, (PACKAGE / relative).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("relative", "source", "broken"),
    [
        ("models/ada_clip/torch_model.py", "from anomalib_medclip.models.april_gan import AprilGANModel", True),
        ("models/ada_clip/torch_model.py", "import anomalib_medclip.models.ano_vl.torch_model as t", True),
        ("models/ada_clip/torch_model.py", "def f():\n    from ..april_gan import torch_model\n", True),
        ("models/ada_clip/lightning_model.py", "from anomalib_medclip.models import AnoVL", True),
        ("models/ada_clip/lightning_model.py", "from anomalib_medclip.models import april_gan", True),
        ("models/ada_clip/__init__.py", "from ..vanilla_clip import VanillaCLIP", True),
        ("models/ada_clip/hsf.py", "from .torch_model import AdaCLIPModel", False),
        ("models/ada_clip/hsf.py", "from anomalib_medclip.models.ada_clip.torch_model import AdaCLIPModel", False),
        ("models/ada_clip/hsf.py", "from anomalib_medclip.models.components import PromptedModel", False),
        ("models/ada_clip/hsf.py", "from ..components.text import PromptedModel", False),
        ("models/__init__.py", "from anomalib_medclip.models.ada_clip import AdaCLIP", False),
        ("models/components/module.py", "import open_clip", True),
        ("models/components/official.py", "from anomalib_medclip.models.april_gan import torch_model", True),
        ("models/ada_clip/torch_model.py", "from open_clip.transformer import VisionTransformer", True),
        ("utils/__init__.py", "def f():\n    import open_clip\n", True),
        ("backbones/clip.py", "import open_clip", False),
        ("backbones/loading.py", "from open_clip import create_model", False),
        ("data/brats.py", "from anomalib_medclip.models import VanillaCLIP", True),
        ("data/brats.py", "import anomalib_medclip.models.components", True),
        ("volumes/evaluator.py", "from ..models.components import quarter_layers", True),
        ("volumes/evaluator.py", "from anomalib_medclip import models", True),
        ("volumes/evaluator.py", "from anomalib_medclip.data import BraTS", False),
        ("data/brats.py", "from anomalib_medclip.volumes import VolumeEvaluator", False),
        ("models/ada_clip/torch_model.py", "import transformers", True),
        ("backbones/towers.py", "from transformers.masking_utils import create_bidirectional_mask", False),
        ("models/anomaly_clip/torch_model.py", "x = self.backbone.clip.visual.proj", True),
        ("models/anomaly_clip/torch_model.py", "x = backbone.clip.visual.proj", True),
        ("models/anomaly_clip/torch_model.py", "x = self.backbone.project_tokens(t, final_norm=False)", False),
    ],
)
def test_a_violation_is_found(relative: str, source: str, broken: bool) -> None:
    assert bool(violations(Path(relative), source)) == broken
