"""The training loss: each distortion term, SSIM against pytorch-msssim, and the method's choice checked."""

import pytest
import torch
from pytorch_msssim import ssim as reference_ssim

from codec.train.losses import ssim, training_loss
from codec.train.method import DISTORTIONS, METHODS


def _pair(seed=0, size=(24, 20)):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(*size, 3, generator=g, dtype=torch.float64)
    rendered = (target + 0.1 * torch.randn(*size, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    return rendered, target


def test_rmse_is_the_root_of_the_mean_square_and_pulls_each_pixel_by_its_error():
    rendered, target = _pair()
    loss = training_loss(rendered, target, "rmse", 0.0)
    error = (rendered - target).detach()
    assert float(loss.detach()) == pytest.approx(float(error.square().mean().sqrt()), rel=1e-12)
    loss.backward()
    # d sqrt(mean e^2) / d e = e / (n * rmse): MSE's direction, so the largest errors move most
    assert torch.allclose(rendered.grad, error / (error.numel() * float(loss.detach())), rtol=1e-10)


def test_l1_pulls_every_pixel_alike():
    rendered, target = _pair(1)
    loss = training_loss(rendered, target, "l1", 0.0)
    error = (rendered - target).detach()
    assert float(loss.detach()) == pytest.approx(float(error.abs().mean()), rel=1e-12)
    loss.backward()
    assert torch.allclose(rendered.grad.abs(), torch.full_like(error, 1 / error.numel()))


def test_a_perfect_render_has_a_finite_rmse_gradient():
    target = torch.rand(16, 16, 3, dtype=torch.float64)
    rendered = target.clone().requires_grad_(True)
    training_loss(rendered, target, "rmse", 0.0).backward()
    assert torch.isfinite(rendered.grad).all()


@pytest.mark.parametrize("distortion", DISTORTIONS)
def test_ssim_weight_mixes_in_one_minus_ssim(distortion):
    rendered, target = _pair(2)
    plain = float(training_loss(rendered.detach(), target, distortion, 0.0))
    as_batch = lambda t: t.detach().permute(2, 0, 1)[None].float()  # noqa: E731
    expected = 0.8 * plain + 0.2 * (1 - float(reference_ssim(as_batch(rendered), as_batch(target), data_range=1.0)))
    assert float(training_loss(rendered.detach(), target, distortion, 0.2)) == pytest.approx(expected, abs=1e-5)


def test_ssim_matches_pytorch_msssim():
    rendered, target = _pair(3, (40, 33))
    as_batch = lambda t: t.detach().permute(2, 0, 1)[None].float()  # noqa: E731
    ours = float(ssim(as_batch(rendered), as_batch(target)))
    assert ours == pytest.approx(float(reference_ssim(as_batch(rendered), as_batch(target), data_range=1.0)), abs=1e-5)


def test_an_unknown_distortion_is_refused():
    with pytest.raises(ValueError, match="distortion must be one of"):
        METHODS["default"].replace(**{"loss.distortion": "l2"})
    rendered, target = _pair()
    with pytest.raises(ValueError, match="distortion must be one of"):
        training_loss(rendered, target, "l2", 0.0)
