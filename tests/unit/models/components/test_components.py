import numpy as np
import pytest
import torch
from scipy import ndimage

from anomalib_medclip.models.components import GaussianSmoothing
from anomalib_medclip.models.components.losses import MapLoss, focal_loss


@pytest.mark.parametrize(("sigma", "size"), [(4.0, 64), (4.0, 9), (1.5, 20), (0.0, 12)])
def test_gaussian_smoothing_equals_scipy(sigma: float, size: int) -> None:
    maps = torch.rand(3, 2, size, size + 3, generator=torch.Generator().manual_seed(0))
    ours = GaussianSmoothing(sigma)(maps).numpy()
    expected = np.stack([[ndimage.gaussian_filter(m, sigma=sigma) for m in image] for image in maps.numpy()])
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_gaussian_smoothing_rejects_bad_sigma() -> None:
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0, got -1"):
        GaussianSmoothing(-1.0)


def test_map_loss_one_sided_dice() -> None:
    probs_anom = torch.rand(2, 1, 8, 8)
    probs = torch.cat([1 - probs_anom, probs_anom], dim=1)
    mask = torch.rand(2, 8, 8) > 0.5
    gt = mask.float()
    p_t = torch.where(mask, probs[:, 1], probs[:, 0])
    focal = (-((1 - p_t) ** 2) * p_t.log()).mean()
    inter = (probs[:, 1] * gt).sum((1, 2))
    dice = (1 - (2 * inter + 1e-5) / (probs[:, 1].sum((1, 2)) + gt.sum((1, 2)) + 1e-5)).mean()
    assert torch.allclose(MapLoss(normal_dice=False)(probs, mask), focal + dice, atol=1e-5)


def test_focal_label_smoothing_equals_numpy_formula() -> None:
    """The originals' ``FocalLoss(smooth=1e-5)``: clamped one-hot targets and ``p_t + s`` (numpy, float64)."""
    probs_anom = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    probs = torch.cat([1 - probs_anom, probs_anom], dim=1)
    mask = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5
    p, m, s = probs.double().numpy(), mask.numpy(), 1e-5
    target = np.clip(np.stack([~m, m], axis=1).astype(np.float64), s, 1 - s)
    p_t = (target * p).sum(axis=1) + s
    expected = float(np.mean(-((1 - p_t) ** 2) * np.log(p_t)))
    assert focal_loss(probs, mask, label_smoothing=s).item() == pytest.approx(expected, rel=1e-5)
    assert focal_loss(probs, mask).item() != pytest.approx(expected, rel=1e-7)  # the smoothing is a real term


def test_focal_label_smoothing_bounds_saturated_maps() -> None:
    """On saturated maps (AA-CLIP's ``100 * cos``) the smoothing bounds ``-log p_t``; unsmoothed, the loss is larger."""
    probs = (torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 40).softmax(dim=1)
    mask = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5
    smoothed = MapLoss.reference(normal_dice=True, focal_smoothing=1e-5)(probs, mask)
    assert float(smoothed - MapLoss.reference(normal_dice=True)(probs, mask)) < -0.1
