"""The numba tile renderer (kernels.cpu) against the float64 pure-PyTorch oracle (kernels.reference).

Tolerances. The CPU kernels compute every pixel in float64 from the given values, with the reference's
own cut-off expression, so with float64 inputs they agree with the reference to float64 rounding
(~1e-12 relative; the reference gets transmittance as exp(cumsum(log1p(-a))), the kernel as a running
product). With float32 inputs the only extra error is the final cast of image and gradients to float32
(relative 6e-8). Hence:
* forward: atol 1e-5 (float32), 1e-10 (float64), on colours in [0, 1];
* gradients: rtol 1e-5 and atol 1e-6 x the largest reference entry (float32); 1e-9 and 1e-10 (float64).
  The scale of each gradient differs (d/dscale grows like scale^-3), hence atol relative to its maximum.
"""

from __future__ import annotations

import math

import pytest
import torch

from kernels import render
from kernels.cpu import render_cpu
from kernels.reference import ALPHA_MAX, render_reference

NAMES = ("means", "scales", "rotations", "colors", "opacities")
TOL = {torch.float32: dict(image=1e-5, rtol=1e-5, atol=1e-6), torch.float64: dict(image=1e-10, rtol=1e-9, atol=1e-10)}


def scene(n: int, height: int, width: int, seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    """Random Gaussians, some partly or wholly outside the image, scales 0.3 to 10 px."""
    gen = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float64)
    means = (torch.rand(n, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2) * size
    scales = torch.exp(torch.empty(n, 2, dtype=torch.float64).uniform_(math.log(0.3), math.log(10.0), generator=gen))
    rotations = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    colors = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    opacities = torch.rand(n, generator=gen, dtype=torch.float64) * 0.95 + 0.05
    return [t.to(dtype) for t in (means, scales, rotations, colors, opacities)]


def render_and_grads(fn, params, height, width, mode, upstream):
    leaves = [p.detach().clone().requires_grad_() for p in params]
    image = fn(*leaves, height, width, mode)
    grads = torch.autograd.grad(image, leaves, upstream, allow_unused=True)
    return image.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads)]


def check_against_reference(params, height, width, mode, seed=0):
    """Forward and all five gradients of render_cpu vs the float64 reference, random upstream gradient."""
    dtype = params[3].dtype
    tol = TOL[dtype]
    gen = torch.Generator().manual_seed(seed + 1)
    upstream = torch.randn(height, width, 3, generator=gen, dtype=torch.float64)
    image, grads = render_and_grads(render_cpu, params, height, width, mode, upstream.to(dtype))
    ref_image, ref_grads = render_and_grads(
        render_reference, [p.double() for p in params], height, width, mode, upstream
    )
    assert image.dtype == dtype and image.shape == (height, width, 3)
    torch.testing.assert_close(image.double(), ref_image, rtol=0, atol=tol["image"])
    for name, p, g, ref in zip(NAMES, params, grads, ref_grads):
        assert g.dtype == p.dtype and g.shape == p.shape, name
        assert torch.isfinite(g).all(), name
        atol = tol["atol"] * max(ref.abs().max().item(), 1.0) if ref.numel() else 0.0
        torch.testing.assert_close(g.double(), ref, rtol=tol["rtol"], atol=atol, msg=lambda m: f"{name}: {m}")
    return image, grads


@pytest.mark.parametrize("mode", ["alpha", "sum"])
@pytest.mark.parametrize("n", [0, 1, 5, 300])
@pytest.mark.parametrize("height,width", [(1, 1), (17, 33), (64, 48), (100, 70)])
def test_matches_reference(height, width, n, mode):
    seed = 1000 * height + 10 * width + n + (mode == "sum")
    check_against_reference(scene(n, height, width, seed), height, width, mode, seed)


@pytest.mark.parametrize("mode", ["alpha", "sum"])
def test_matches_reference_float64(mode):
    image, _ = check_against_reference(scene(200, 40, 56, 7, torch.float64), 40, 56, mode)
    assert image.dtype == torch.float64


def test_dispatch_through_render():
    params = scene(50, 20, 30, 3)
    torch.testing.assert_close(render(*params, 20, 30, backend="cpu"), render_cpu(*params, 20, 30), rtol=0, atol=0)


def test_empty_scene_gives_black_image_and_empty_gradients():
    image, grads = check_against_reference(scene(0, 9, 21, 0), 9, 21, "alpha")
    assert image.abs().max() == 0
    assert [tuple(g.shape) for g in grads] == [(0, 2), (0, 2), (0,), (0, 3), (0,)]


def test_gaussians_outside_the_image_contribute_nothing():
    means = torch.tensor([[-40.0, 10.0], [10.0, -40.0], [80.0, 10.0], [10.0, 60.0], [-1e6, 1e6]])
    params = [means, torch.full((5, 2), 3.0), torch.zeros(5), torch.rand(5, 3), torch.full((5,), 0.9)]
    image, grads = check_against_reference(params, 20, 30, "alpha")
    assert image.abs().max() == 0
    assert all(g.abs().max() == 0 for g in grads)


@pytest.mark.parametrize("mode", ["alpha", "sum"])
def test_tiny_and_huge_scales(mode):
    # 0.05 px: only a pixel centre within 0.15 px of the mean is reached; 200 px: bigger than the image.
    means, _, rotations, colors, opacities = scene(40, 37, 45, 11)
    means[:20] = torch.floor(means[:20]) + 0.5 + 0.1 * torch.rand(20, 2)  # tiny ones near pixel centres
    scales = torch.cat([torch.full((20, 2), 0.05), torch.tensor([[200.0, 80.0]]).expand(20, 2)])
    check_against_reference([means, scales, rotations, colors, opacities], 37, 45, mode)


@pytest.mark.parametrize("mode", ["alpha", "sum"])
def test_needles_at_every_angle(mode):
    # Each row is walked only over its solved span of the ellipse: thin rotated Gaussians (aspect up
    # to 2000) are where a wrong span would drop pixels; float64 makes any dropped pixel visible.
    n = 120
    means, _, _, colors, opacities = scene(n, 64, 80, 12, torch.float64)
    long_side = torch.linspace(3.0, 60.0, n, dtype=torch.float64)
    scales = torch.stack([long_side, long_side / torch.logspace(0, 3.3, n, dtype=torch.float64)], 1)
    rotations = torch.linspace(0, math.pi, n, dtype=torch.float64)
    check_against_reference([means, scales, rotations, colors, opacities], 64, 80, mode)


def test_opacity_near_one_is_clamped_without_gradient():
    n = 30
    means, scales, rotations, colors, _ = scene(n, 24, 40, 5)
    opacities = torch.cat([torch.ones(10), torch.full((10,), 0.9995), torch.full((10,), ALPHA_MAX)])
    _, grads = check_against_reference([means, scales, rotations, colors, opacities], 24, 40, "alpha")
    assert torch.isfinite(torch.cat([g.flatten() for g in grads])).all()


@pytest.mark.parametrize("mode", ["alpha", "sum"])
def test_many_opaque_gaussians_stacked_on_one_pixel(mode):
    # 400 near-opaque Gaussians on one spot: transmittance 1e-3^400 underflows even float64, which a
    # back-to-front backward (T_i = T_final / prod(1 - a)) cannot undo; the front Gaussians still matter.
    n = 400
    gen = torch.Generator().manual_seed(9)
    means = torch.tensor([[8.3, 6.7]]) + 0.2 * torch.rand(n, 2, generator=gen)
    scales = 2.0 + torch.rand(n, 2, generator=gen)
    rotations = torch.rand(n, generator=gen) * 3.0
    colors = torch.rand(n, 3, generator=gen)
    opacities = 0.99 + 0.01 * torch.rand(n, generator=gen)
    image, grads = check_against_reference([means, scales, rotations, colors, opacities], 13, 17, mode)
    assert torch.isfinite(image).all()
    assert grads[3][0].abs().max() > 0.01  # the front Gaussian's colour gradient survives


def test_fully_covered_image_is_fully_written():
    # A Gaussian bigger than the image reaches every pixel, so an unwritten pixel (tile edge, last
    # partial tile) would show as a difference from the reference, and as a zero.
    height, width = 35, 50
    params = scene(60, height, width, 13)
    params[0][0] = torch.tensor([width / 2, height / 2])
    params[1][0] = torch.tensor([400.0, 300.0])
    params[3][0] = torch.tensor([0.2, 0.5, 0.9])
    params[4][0] = 0.8
    image, _ = check_against_reference(params, height, width, "alpha")
    assert (image > 0.05).all()


def test_forward_and_backward_are_deterministic():
    params = scene(300, 100, 70, 21)
    first, first_grads = render_and_grads(render_cpu, params, 100, 70, "alpha", torch.ones(100, 70, 3))
    second, second_grads = render_and_grads(render_cpu, params, 100, 70, "alpha", torch.ones(100, 70, 3))
    assert first.numpy().tobytes() == second.numpy().tobytes()
    assert all(a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(first_grads, second_grads))


def test_output_dtype_follows_colors_and_editing_it_leaves_gradients_intact():
    params = scene(20, 16, 16, 2)
    params[3] = params[3].double()
    expected = render_and_grads(lambda *a: render_cpu(*a) * 2, params, 16, 16, "alpha", torch.ones(16, 16, 3))
    # In place: the float64 output must not share memory with the image the backward pass reads.
    got = render_and_grads(lambda *a: render_cpu(*a).mul_(2), params, 16, 16, "alpha", torch.ones(16, 16, 3))
    assert expected[0].dtype == torch.float64
    assert torch.equal(got[0], expected[0])
    assert all(torch.equal(a, b) for a, b in zip(got[1], expected[1]))
