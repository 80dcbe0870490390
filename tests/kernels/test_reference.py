"""The pure-PyTorch oracle against a naive per-pixel float64 loop, and autograd gradcheck."""

import math

import pytest
import torch

from kernels import ALPHA_MAX, CUTOFF_MAHALANOBIS_SQ, render
from kernels.reference import render_reference


def naive_render(means, scales, rotations, colors, opacities, height, width, mode):
    """Paper eq. 4-6 pixel by pixel, Gaussian by Gaussian, in index order."""
    out = torch.zeros(height, width, 3, dtype=torch.float64)
    for i in range(height):
        for j in range(width):
            transmittance, pixel = 1.0, torch.zeros(3, dtype=torch.float64)
            for g in range(len(means)):
                c, s = math.cos(rotations[g]), math.sin(rotations[g])
                rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
                covariance = rotation @ torch.diag(scales[g] ** 2) @ rotation.T
                d = torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64) - means[g]
                maha = float(d @ torch.linalg.inv(covariance) @ d)
                if maha > CUTOFF_MAHALANOBIS_SQ:
                    continue
                alpha = min(float(opacities[g]) * math.exp(-0.5 * maha), ALPHA_MAX)
                pixel += colors[g] * alpha * (transmittance if mode == "alpha" else 1.0)
                transmittance *= 1 - alpha
            out[i, j] = pixel
    return out


def random_scene(n, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=generator, dtype=torch.float64) * torch.tensor([width, height]) * 1.2 - 1
    scales = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 3 + 0.3
    rotations = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
    colors = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    opacities = torch.rand(n, generator=generator, dtype=torch.float64)
    opacities[:1] = 1.0  # exercises the ALPHA_MAX clamp
    return means, scales, rotations, colors, opacities


@pytest.mark.parametrize("mode", ["alpha", "sum"])
@pytest.mark.parametrize("n, height, width, seed", [(0, 3, 4, 0), (1, 5, 5, 1), (9, 9, 11, 2), (25, 12, 7, 3)])
def test_reference_matches_naive_loop(mode, n, height, width, seed):
    scene = random_scene(n, height, width, seed)
    expected = naive_render(*scene, height, width, mode)
    actual = render(*scene, height, width, mode, backend="reference")
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["alpha", "sum"])
def test_reference_gradients_pass_gradcheck(mode):
    means, scales, rotations, colors, opacities = random_scene(6, 7, 8, seed=4)
    opacities = opacities.clamp(max=0.9)  # stay off the clamp's kink, where finite differences disagree
    inputs = [t.clone().requires_grad_(True) for t in (means, scales, rotations, colors, opacities)]

    def f(*tensors):
        return render_reference(*tensors, 7, 8, mode)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape, message", [
    (dict(means=torch.zeros(2, 3)), "means must have shape"),
    (dict(colors=torch.zeros(2, 4)), "colors must have shape"),
])
def test_render_validates_shapes(shape, message):
    tensors = dict(means=torch.zeros(2, 2), scales=torch.ones(2, 2), rotations=torch.zeros(2),
                   colors=torch.zeros(2, 3), opacities=torch.ones(2))
    tensors.update(shape)
    with pytest.raises(ValueError, match=message):
        render(**tensors, height=4, width=4)


def test_render_rejects_unknown_mode_and_backend():
    scene = random_scene(1, 4, 4, 0)
    with pytest.raises(ValueError, match="mode"):
        render(*scene, 4, 4, mode="max")
    with pytest.raises(ValueError, match="backend"):
        render(*scene, 4, 4, backend="opengl")
