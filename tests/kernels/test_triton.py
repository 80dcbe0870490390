"""The Triton renderer against the float64 reference: images and every gradient, both modes.

On a machine without CUDA the kernels run in Triton's interpreter on CPU tensors (tests/conftest.py
sets TRITON_INTERPRET=1 before anything imports triton); with a GPU the same tests run natively.

Tolerances (float32 kernels against a float64 oracle on the same float32 parameters):
* image: |got - ref| <= 1e-5 * max(1, max |ref|);
* gradients, per tensor: |got - ref| <= 2e-5 * max |ref| + 1e-3 * |ref|.
Observed errors are about ten times smaller; the module docstring of kernels/triton_blend.py says where
they come from.
"""

from __future__ import annotations

import math
import os
import zlib

import pytest
import torch

from host_sync import HostSyncRecorder
from kernels import PairBound, render
from kernels import triton_blend
from kernels.binning import TILE, bin_gaussians, bin_gaussians_reference
from kernels.reference import ALPHA_MAX, render_reference

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SEED_OFFSET = int(os.environ.get("GSIC_TEST_SEED", "0"))  # set to vary the scenes between runs
PARAM_NAMES = ("means", "scales", "rotations", "colors", "opacities")

if DEVICE.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA and TRITON_INTERPRET is not 1 (tests/conftest.py sets it)", allow_module_level=True)


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(name.encode()) + SEED_OFFSET)


def random_scene(gen, n, height, width, margin=8.0, scale=(0.3, 6.0), opacity=(0.05, 1.0)):
    """Gaussians scattered over the image and a margin around it, log-uniform sizes, any rotation."""
    lo, hi = math.log(scale[0]), math.log(scale[1])
    return {
        "means": torch.rand(n, 2, generator=gen) * torch.tensor([width + 2 * margin, height + 2 * margin]) - margin,
        "scales": torch.exp(lo + (hi - lo) * torch.rand(n, 2, generator=gen)),
        "rotations": (torch.rand(n, generator=gen) * 2 - 1) * math.pi,
        "colors": torch.rand(n, 3, generator=gen),
        "opacities": opacity[0] + (opacity[1] - opacity[0]) * torch.rand(n, generator=gen),
    }


def outside_scene(gen, n, height, width):
    """Every Gaussian's 3-sigma ellipse lies wholly off the image, on all four sides."""
    scene = random_scene(gen, n, height, width, scale=(0.5, 3.0))
    side = torch.arange(n) % 4
    far = 3 * 3.0 + 1 + 10 * torch.rand(n, generator=gen)
    mx, my = scene["means"][:, 0], scene["means"][:, 1]
    mx[side == 0] = -far[side == 0]
    mx[side == 1] = width + far[side == 1]
    my[side == 2] = -far[side == 2]
    my[side == 3] = height + far[side == 3]
    return scene


def tiny_scene(gen, n, height, width):
    """Sub-pixel Gaussians placed near pixel centres, so some reach one pixel and some just miss."""
    scene = random_scene(gen, n, height, width, margin=0.0, scale=(1e-3, 1e-2))
    centres = torch.stack([torch.randint(0, width, (n,), generator=gen),
                           torch.randint(0, height, (n,), generator=gen)], 1) + 0.5
    offset = (torch.rand(n, 2, generator=gen) * 2 - 1) * 3.5 * scene["scales"].max(1, keepdim=True).values
    offset[: n // 4] = 0.0  # exactly centred: alpha = opacity at that pixel
    scene["means"] = centres + offset
    return scene


def huge_scene(gen, n, height, width):
    """A few Gaussians far larger than the image over a few ordinary ones."""
    scene = random_scene(gen, n, height, width, opacity=(0.05, 0.6))
    scene["scales"][: n // 2] *= 300.0
    return scene


def opaque_scene(gen, n, height, width):
    """Opacities at and around ALPHA_MAX, so alphas clamp and transmittance collapses."""
    scene = random_scene(gen, n, height, width, scale=(1.0, 8.0), opacity=(0.99, 1.0))
    scene["opacities"][::5] = 1.0
    scene["opacities"][1::5] = ALPHA_MAX
    return scene


def stacked_scene(gen, n, height, width):
    """Many Gaussians on one pixel: transmittance falls below the early-stop threshold there."""
    scene = random_scene(gen, n, height, width, scale=(0.7, 3.0), opacity=(0.3, 1.0))
    scene["means"] = torch.tensor([width * 0.4, height * 0.6]) + 0.3 * torch.randn(n, 2, generator=gen)
    return scene


SCENES = {"random": random_scene, "outside": outside_scene, "tiny": tiny_scene, "huge": huge_scene,
          "opaque": opaque_scene, "stacked": stacked_scene}

# (scene, height, width, N, mode)
CASES = [
    ("random", 17, 33, 0, "alpha"),
    ("random", 1, 1, 1, "alpha"),
    ("random", 1, 1, 5, "alpha"),
    ("random", 1, 1, 5, "sum"),
    ("random", 17, 33, 1, "alpha"),
    ("random", 17, 33, 5, "alpha"),
    ("random", 17, 33, 5, "sum"),
    ("random", 17, 33, 300, "alpha"),
    ("random", 48, 64, 300, "alpha"),
    ("random", 48, 64, 300, "sum"),
    ("outside", 17, 33, 20, "alpha"),
    ("tiny", 17, 33, 300, "alpha"),
    ("huge", 48, 64, 6, "alpha"),
    ("huge", 17, 33, 6, "sum"),
    ("opaque", 48, 64, 60, "alpha"),
    ("stacked", 17, 33, 300, "alpha"),
    ("stacked", 17, 33, 300, "sum"),
]


def _case_id(case) -> str:
    scene, height, width, n, mode = case
    return f"{scene}-{height}x{width}-n{n}-{mode}"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Output buffers start as NaN (floats) or a sentinel (ints): a pixel the kernels skip shows up."""

    def poisoned_empty(*shape, dtype=torch.float32, device=None):
        fill = float("nan") if dtype.is_floating_point else -(2**30)
        return torch.full(shape, fill, dtype=dtype, device=device)

    monkeypatch.setattr(triton_blend, "_empty", poisoned_empty)


def _render_with_grads(params, height, width, mode, weights, fn):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    image = fn(*(leaves[k] for k in PARAM_NAMES), height, width, mode)
    (image * weights.to(image)).sum().backward()
    return image.detach(), {k: leaves[k].grad for k in PARAM_NAMES}


def _assert_image_close(got, ref):
    assert torch.isfinite(got).all(), "non-finite pixels (an unwritten, poisoned pixel?)"
    err = (got.double().cpu() - ref).abs().max().item() if ref.numel() else 0.0
    tol = 1e-5 * max(1.0, ref.abs().max().item() if ref.numel() else 0.0)
    assert err <= tol, f"image differs by {err:.3g} > {tol:.3g}"


def _assert_grad_close(name, got, ref):
    assert got is not None and got.shape == ref.shape, name
    got = got.double().cpu()
    assert torch.isfinite(got).all(), f"non-finite gradient of {name}"
    if ref.numel() == 0:
        return
    tol = 2e-5 * ref.abs().max() + 1e-3 * ref.abs()
    err = (got - ref).abs()
    worst = torch.argmax(err - tol).item()
    assert (err <= tol).all(), (f"gradient of {name} differs by {err.flatten()[worst]:.3g} at {worst} "
                                f"(reference {ref.flatten()[worst]:.3g}, max |ref| {ref.abs().max():.3g})")


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_image_and_gradients_match_float64_reference(case):
    scene_name, height, width, n, mode = case
    gen = _generator(_case_id(case))
    params = SCENES[scene_name](gen, n, height, width)
    weights = torch.randn(height, width, 3, generator=gen)  # a random linear loss reaches every gradient

    def triton_render(*args):
        return render(*args, backend="triton")

    got_image, got_grads = _render_with_grads({k: v.to(DEVICE) for k, v in params.items()}, height, width,
                                              mode, weights.to(DEVICE), triton_render)
    ref_image, ref_grads = _render_with_grads({k: v.double() for k, v in params.items()}, height, width,
                                              mode, weights.double(), render_reference)
    assert got_image.shape == (height, width, 3) and got_image.dtype == torch.float32
    _assert_image_close(got_image, ref_image)
    for name in PARAM_NAMES:
        _assert_grad_close(name, got_grads[name], ref_grads[name])


@pytest.mark.parametrize("case", [("random", 48, 64, 300, "alpha"), ("stacked", 17, 33, 300, "alpha"),
                                  ("random", 17, 33, 300, "sum")], ids=_case_id)
def test_other_platforms_block_sizes(case, monkeypatch):
    """The interpreter runs large chunks, the GPU small ones (more chunks per tile, so more chunk
    boundaries): run each platform's launch settings on the other too."""
    here, other = ("interpreter", "gpu") if DEVICE.type == "cpu" else ("gpu", "interpreter")
    monkeypatch.setitem(triton_blend.LAUNCH, here, triton_blend.LAUNCH[other])
    test_image_and_gradients_match_float64_reference(case)


def test_outside_scene_renders_black_with_zero_gradients():
    params = outside_scene(_generator("outside-zero"), 12, 17, 33)
    image, grads = _render_with_grads({k: v.to(DEVICE) for k, v in params.items()}, 17, 33, "alpha",
                                      torch.ones(17, 33, 3, device=DEVICE), lambda *a: render(*a, backend="triton"))
    assert torch.equal(image.cpu(), torch.zeros(17, 33, 3))
    assert all(torch.equal(g.cpu(), torch.zeros_like(g.cpu())) for g in grads.values())


def test_early_stop_happens_and_is_invisible():
    """The stacked scene drives transmittance below the threshold: the last contribution per pixel
    comes before the end of the tile's list, and the image still matches the reference."""
    height, width = 17, 33
    params = stacked_scene(_generator("early-stop"), 300, height, width)
    params["opacities"].clamp_(min=0.9)
    tensors = [params[k].to(DEVICE) for k in PARAM_NAMES]
    bins = bin_gaussians(*tensors[:3], height, width)
    prepared = triton_blend._prepare(*tensors)
    image, trans, last = triton_blend._blend_forward(*prepared, bins, height, width, "alpha")
    ends = bins.ranges[1:].long().cpu()
    tile_of_pixel = (torch.arange(height)[:, None] // TILE) * bins.tiles_x + torch.arange(width)[None, :] // TILE
    stopped = (last.cpu() >= 0) & (last.cpu().long() < ends[tile_of_pixel] - 1) & (trans.cpu() < 2.0**-24)
    assert stopped.any(), "no pixel stopped early"
    ref = render_reference(*(params[k].double() for k in PARAM_NAMES), height, width, "alpha")
    _assert_image_close(image, ref)


@pytest.mark.parametrize("shape", [(17, 33), (48, 64), (1, 1), (100, 37)])
def test_binning_matches_torch_binning(shape):
    height, width = shape
    gen = _generator(f"bins-{height}x{width}")
    params = random_scene(gen, 200, height, width, margin=12.0, scale=(0.2, 12.0))
    params["means"][0] = float("nan")
    params["scales"][1] = float("inf")
    params["means"][2, 0] = 1e9
    params["scales"][3] = 1e-30
    args = [params[k].to(DEVICE) for k in ("means", "scales", "rotations")]
    got = bin_gaussians(*args, height, width)
    ref = bin_gaussians_reference(*(a.cpu() for a in args), height, width)
    assert (got.tiles_x, got.tiles_y) == (ref.tiles_x, ref.tiles_y)
    assert torch.equal(got.ranges.cpu(), ref.ranges)
    assert torch.equal(got.gids.cpu(), ref.gids)


def _bin_scene(name: str, height=48, width=64, n=300):
    params = random_scene(_generator(name), n, height, width, margin=12.0, scale=(0.2, 12.0))
    return [params[k].to(DEVICE) for k in ("means", "scales", "rotations")], height, width


def test_binning_with_a_bound_reads_nothing_back_and_matches():
    """Issue 18: sized from a PairBound, binning makes no host round trip after the first render, and
    its tile lists are exactly those of the counted sizing (the spare slots sort past the last tile)."""
    args, height, width = _bin_scene("bins-bound")
    exact = bin_gaussians(*args, height, width)
    bound = PairBound()
    bin_gaussians(*args, height, width, bound)  # the first render sizes the bound
    with HostSyncRecorder() as syncs:
        got = bin_gaussians(*args, height, width, bound)
    assert [str(s) for s in syncs.events] == []
    pairs = int(exact.ranges[-1])
    assert got.gids.shape[0] == bound.capacity > pairs
    assert torch.equal(got.ranges, exact.ranges)
    assert torch.equal(got.gids[:pairs], exact.gids)
    assert bound.check() is False and bound.capacity >= 2 * pairs


def test_a_bound_that_overflows_is_reported_at_the_check_and_grows():
    args, height, width = _bin_scene("bins-overflow")
    exact = bin_gaussians(*args, height, width)
    pairs = int(exact.ranges[-1])
    bound = PairBound()
    bound.capacity = pairs // 3  # as if the Gaussians had grown since the last check
    clipped = bin_gaussians(*args, height, width, bound)
    assert int(clipped.ranges[-1]) == pairs // 3  # only the pairs that fit, each one a real pair
    real = {(t, g) for t in range(len(exact.ranges) - 1)
            for g in exact.gids[exact.ranges[t]:exact.ranges[t + 1]].tolist()}
    kept = {(t, g) for t in range(len(clipped.ranges) - 1)
            for g in clipped.gids[clipped.ranges[t]:clipped.ranges[t + 1]].tolist()}
    assert kept <= real and len(kept) == pairs // 3
    assert bound.check() is True and bound.capacity >= 2 * pairs
    again = bin_gaussians(*args, height, width, bound)
    assert torch.equal(again.ranges, exact.ranges) and torch.equal(again.gids[:pairs], exact.gids)
    assert bound.check() is False


def test_render_with_a_bound_matches_render_without():
    args, height, width = _bin_scene("render-bound", n=120)
    gen = _generator("render-bound-colours")
    colors, opacities = torch.rand(120, 3, generator=gen).to(DEVICE), torch.rand(120, generator=gen).to(DEVICE)
    bound = PairBound()
    with_bound = render(*args, colors, opacities, height, width, "alpha", backend="triton", pair_bound=bound)
    without = render(*args, colors, opacities, height, width, "alpha", backend="triton")
    assert torch.equal(with_bound, without)


def test_float64_inputs_come_back_float64_and_match():
    params = random_scene(_generator("dtype"), 20, 17, 33)
    args = [params[k].double().to(DEVICE) for k in PARAM_NAMES]
    got = render(*args, 17, 33, backend="triton")
    assert got.dtype == torch.float64
    _assert_image_close(got, render_reference(*(a.cpu() for a in args), 17, 33))


def test_rejects_unknown_mode():
    params = random_scene(_generator("mode"), 3, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        triton_blend.render_triton(*(params[k].to(DEVICE) for k in PARAM_NAMES), 4, 4, "max")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: checks that render() picks Triton "
                    "for CUDA tensors (the kernels themselves are tested above in the interpreter)")
def test_auto_backend_picks_triton_for_cuda_tensors():
    params = random_scene(_generator("auto"), 500, 96, 128)
    args = [params[k].cuda() for k in PARAM_NAMES]
    auto = render(*args, 96, 128)
    explicit = triton_blend.render_triton(*args, 96, 128)
    assert auto.is_cuda
    # Same kernels, same inputs; only the atomics' order could differ, and the forward has none.
    assert torch.equal(auto, explicit)
    _assert_image_close(auto, render_reference(*(a.cpu().double() for a in args), 96, 128))
