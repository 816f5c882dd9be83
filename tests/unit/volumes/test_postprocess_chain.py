# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""The UAD post-processing chain: each step against scipy.ndimage, the preset, and the val_dice threshold."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from anomalib_medclip.data.nifti import read_volume
from anomalib_medclip.volumes import (
    DiceCurve,
    EvaluationSettings,
    VolumeEvaluator,
    erode_brain,
    finalise_volume,
    median_filter_at,
    oracle_threshold,
    read_ground_truth,
    remove_small_components,
)
from anomalib_medclip.volumes.finalise import ORACLE_GRID
from anomalib_medclip.volumes.settings import UAD_PRESET
from tests.unit.volumes.test_evaluator import _batch, _slices, _write_case


def _blob(shape: tuple[int, int, int], seed: int, order: str = "F") -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.5
    return np.asarray(mask, order=order)


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("region", ["borders", "inside", "one border"])
def test_median_filter_equals_scipy_at_the_counted_voxels(order: str, size: int, region: str) -> None:
    rng = np.random.default_rng(0)
    score = np.asarray(rng.random((19, 17, 11), dtype=np.float32), order=order)
    where = _blob(score.shape, 1, order)
    if region == "borders":
        where[0, :, 0] = where[-1, -1, :] = True  # borders: scipy's 'reflect' mode
    else:  # only the box of the counted voxels plus its margin is padded: inside, or touching one border
        box = np.zeros(score.shape, bool)
        box[4:13, 3:12, 1:9] = True
        where &= box
        where[4, 3:12, 5] = True
        if region == "one border":
            where[0, 5, 4] = True
    assert where.any()
    ours = median_filter_at(score, where, size)
    reference = ndimage.median_filter(score, size=size)
    assert np.abs(ours[where] - reference[where]).max() <= 1e-6
    assert not ours[~where].any()
    in_place = score.copy(order="K")
    median_filter_at(in_place, where, size, out=in_place)
    assert np.array_equal(in_place, ours)
    assert median_filter_at(score, where, 0) is score
    assert not median_filter_at(score, np.zeros(score.shape, bool), size).any()


@pytest.mark.parametrize("iterations", [1, 3, 9])
def test_brain_erosion_equals_slice_wise_scipy_erosion(iterations: int) -> None:
    brain = _blob((40, 36, 7), 2)
    brain[:, :5, 3] = True  # touches the image border: the border erodes as in binary_erosion
    cross = ndimage.generate_binary_structure(2, 1)
    reference = np.stack(
        [ndimage.binary_erosion(brain[:, :, z], cross, iterations=iterations) for z in range(brain.shape[2])], -1
    )
    assert np.array_equal(erode_brain(brain, iterations), reference)
    assert erode_brain(brain, 0) is brain
    assert not erode_brain(np.zeros((5, 5, 2), bool), 2).any()


def test_small_component_removal_equals_scipy_labelling() -> None:
    mask = _blob((30, 30, 20), 3) & (np.random.default_rng(4).random((30, 30, 20)) > 0.3)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(labels.max() + 1))
    reference = (sizes >= 8)[labels] & mask
    assert np.array_equal(remove_small_components(mask, 8), reference)
    assert 0 < reference.sum() < mask.sum()  # the case removes some components and keeps others


def test_dice_curve_pools_volumes_and_equals_direct_counting() -> None:
    rng = np.random.default_rng(5)
    volumes = [(rng.random(500) ** 2, rng.random(500) > 0.7) for _ in range(3)]
    volumes[0][0][:5] = ORACLE_GRID[[0, 10, 50, 99, 100]]  # scores exactly on grid values
    curve = DiceCurve()
    for score, gt in volumes:
        curve.update(score, gt)
    score, gt = (np.concatenate(parts) for parts in zip(*volumes, strict=True))
    direct = [2 * (gt & (score > t)).sum() / (gt.sum() + (score > t).sum()) for t in ORACLE_GRID]
    assert np.allclose(curve.dice(), direct, atol=0)
    assert curve.best_threshold() == ORACLE_GRID[int(np.argmax(direct))] == oracle_threshold(score, gt)


def test_uad_preset_fills_the_chain_options_left_at_their_defaults() -> None:
    chain = EvaluationSettings(postprocess="uad").chain()
    assert {name: getattr(chain, name) for name in UAD_PRESET} == UAD_PRESET
    assert chain.postprocess == "none"
    assert EvaluationSettings().chain() == EvaluationSettings()
    given = EvaluationSettings(postprocess="uad", median_kernel=3).chain()
    assert (given.median_kernel, given.brain_erosion, given.threshold_policy) == (3, "auto", "val_dice")
    for option, value in (("median_kernel", 4), ("brain_erosion", -1), ("brain_erosion", "some"), ("fusion", "sum")):
        with pytest.raises(ValueError, match=f"{option}="):
            EvaluationSettings(**{option: value})
    assert EvaluationSettings(brain_erosion="auto").erosion_iterations((240, 240)) == 9


def test_finalise_with_the_uad_chain_equals_the_scipy_pipeline(tmp_path: Path) -> None:
    image_path, seg_path = _write_case(tmp_path, "case", lesion=True, seed=0)
    image = read_volume(image_path)
    gt = read_ground_truth(seg_path, image)
    maps = dict(_slices(image_path, seg_path, "random", np.random.default_rng(1)))
    settings = EvaluationSettings(postprocess="uad", brain_erosion=1, min_component_voxels=3)
    with pytest.raises(ValueError, match="val_dice' needs the Dice-optimal threshold"):
        finalise_volume(maps, image, gt, settings)
    result = finalise_volume(maps, image, gt, settings, val_threshold=0.4)
    plain = finalise_volume(maps, image, gt, EvaluationSettings(brain_only=False))
    brain = image.data > 0
    eroded = np.stack([ndimage.binary_erosion(brain[:, :, z], iterations=1) for z in range(brain.shape[2])], -1)
    expected = np.where(eroded, ndimage.median_filter(plain.score, size=5), 0)
    assert np.abs(result.score - expected).max() <= 1e-6
    labels, _ = ndimage.label((expected > 0.4) & brain, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())
    assert np.array_equal(result.pred, (sizes >= 3)[labels] & (labels > 0))
    assert result.threshold == 0.4


class _PostProcessor:
    """Stands in for anomalib's PostProcessor: an affine normalisation, recorded."""

    enable_normalization = True

    def normalize_batch(self, batch: SimpleNamespace) -> None:
        batch.anomaly_map = ((batch.anomaly_map - 0.2) / 2.0 + 0.5).clamp(0, 1)


def test_val_dice_threshold_is_learnt_on_validation_volumes_and_restored(tmp_path: Path) -> None:
    cases = [(*_write_case(tmp_path, f"case_{i}", lesion=True, seed=i), f"case_{i}") for i in range(3)]
    rng = np.random.default_rng(7)
    batches, expected_curve = [], DiceCurve()
    settings = EvaluationSettings(postprocess="uad", brain_erosion=1)
    for index, (image_path, seg_path, name) in enumerate(cases):
        raw = [
            (z, 0.2 + 2.0 * (m - 0.5) + 0.3 * rng.random(m.shape))
            for z, m in _slices(image_path, seg_path, "perfect", rng)
        ]
        batches.append(_batch([(name, index, image_path, seg_path, z, m.astype(np.float32)) for z, m in raw]))
        image = read_volume(image_path)
        normalised = {z: np.clip((m - 0.2) / 2.0 + 0.5, 0, 1) for z, m in raw}
        score = finalise_volume(normalised, image, None, settings, val_threshold=0.0).score
        expected_curve.update(score[image.data > 0], read_ground_truth(seg_path, image)[image.data > 0])
    evaluator = VolumeEvaluator(postprocess="uad", brain_erosion=1, brats_official=False)
    trainer = SimpleNamespace(is_global_zero=True, world_size=1, sanity_checking=False)
    logged = []
    module = SimpleNamespace(post_processor=_PostProcessor(), log=lambda key, value, **_: logged.append((key, value)))
    evaluator.on_validation_start(trainer, module)
    for batch in batches:
        evaluator.on_validation_batch_end(trainer, module, batch, batch, 0)
    evaluator.on_validation_epoch_end(trainer, module)
    assert evaluator.val_threshold == expected_curve.best_threshold()
    assert logged == [("val_dice_threshold", evaluator.val_threshold)]
    restored = VolumeEvaluator(postprocess="uad", brain_erosion=1, brats_official=False)
    restored.load_state_dict(evaluator.state_dict())
    assert restored.val_threshold == evaluator.val_threshold
    # test: the summary records the chain and the learnt threshold
    samples = pd.DataFrame({"volume_id": np.repeat([c[2] for c in cases], 6)})
    trainer = SimpleNamespace(
        default_root_dir=tmp_path / "run",
        datamodule=SimpleNamespace(test_data=SimpleNamespace(samples=samples)),
        is_global_zero=True,
        world_size=1,
    )
    module = SimpleNamespace(log=lambda *_, **__: None, hparams={})
    restored.on_test_start(trainer, module)
    for batch in batches:
        normalised = SimpleNamespace(
            **{**batch.__dict__, "anomaly_map": ((batch.anomaly_map - 0.2) / 2 + 0.5).clamp(0, 1)}
        )
        restored.on_test_batch_end(trainer, module, None, normalised, 0)
    restored.on_test_epoch_end(trainer, module)
    summary = json.loads((tmp_path / "run" / "volumes" / "summary.json").read_text())
    assert summary["threshold_policy"] == "val_dice"
    assert summary["threshold"] == evaluator.val_threshold
    assert summary["postprocess"] == "uad"
    assert summary["chain"] == [
        "slice-wise brain-mask erosion, 1 iterations",
        "3D median filter, kernel 5",
        "threshold: best pooled Dice of the validation volumes (0.01 grid)",
        "remove 26-connected components under 8 voxels",
    ]
    table = pd.read_csv(tmp_path / "run" / "volumes" / "metrics_per_volume.csv")
    assert (table.threshold == evaluator.val_threshold).all()
    assert torch.is_tensor(batches[0].anomaly_map)
