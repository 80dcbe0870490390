"""Rate control's plan and counts, the shape parametrisation, and the quantised form's round trip."""

import math

import numpy as np
import pytest
import torch

from codec.format.bitstream import read_bitstream, write_bitstream
from codec.train.method import METHODS
from codec.decode.dequantise import scales_and_rotation, to_render_inputs
from codec.format.values import Layout, PositionGrid, QuantizedGaussians
from codec.train.quantise import from_trained, grid_index, log_covariance, snap
from codec.train.rate import BUDGET_FILL, MIN_GAUSSIANS, RateControl, estimate_bits, measure, plan_rate


@pytest.mark.parametrize("method", ["default", "paper"])
def test_plan_is_the_largest_count_that_the_model_fits(method):
    budget = 0.125 * 768 * 512
    plan = plan_rate(budget, 512, 768, METHODS[method])
    assert estimate_bits(plan) <= budget
    more = plan_rate(budget * 1.2, 512, 768, METHODS[method])
    assert more.n_gaussians > plan.n_gaussians
    per_gaussian = method == "default"
    assert (plan.k_shape == 0) == (plan.k_color == 0) == per_gaussian == plan.rows_sorted
    assert (plan.shape_bits, plan.color_bits) == ((7, 6) if per_gaussian else (8, 8))
    if not per_gaussian:
        assert 8 <= plan.k_color <= 256 and plan.k_color & (plan.k_color - 1) == 0  # a power of two


def test_estimate_grows_with_the_count_and_sorted_rows_cost_less():
    small = plan_rate(20_000, 512, 768, METHODS["default"])
    large = plan_rate(80_000, 512, 768, METHODS["default"])
    assert estimate_bits(large) > estimate_bits(small)
    unsorted = type(large)(**{**large.__dict__, "rows_sorted": False})
    assert estimate_bits(unsorted) > estimate_bits(large)


def test_finer_columns_buy_fewer_gaussians():
    coarse = plan_rate(50_000, 512, 768, METHODS["default"].replace(**{"format.shape_bits": 5}))
    fine = plan_rate(50_000, 512, 768, METHODS["default"])
    assert fine.shape_bits == 7 and fine.n_gaussians < coarse.n_gaussians


def test_method_refuses_bits_the_format_cannot_carry():
    with pytest.raises(ValueError, match="shape_bits must be 1 to 10, not 11"):
        METHODS["default"].replace(**{"format.shape_bits": 11})
    with pytest.raises(ValueError, match="color_bits must be 1 to 10, not 0"):
        METHODS["default"].replace(**{"format.color_bits": 0})


def test_plan_never_goes_below_the_floor():
    assert plan_rate(10.0, 8, 8, METHODS["default"]).n_gaussians == MIN_GAUSSIANS


def test_rate_control_counts():
    rate = RateControl.for_image(0.1, 100, 100, METHODS["default"])
    assert rate.budget_bits == pytest.approx(1000)
    assert rate.growth_target(100, 500) == round(100 * BUDGET_FILL * 2)  # half full: about twice the count
    assert rate.prune_target(100, 900) is None  # within the fill
    assert rate.prune_target(100, 2000) == math.floor(100 * BUDGET_FILL / 2)
    assert rate.prune_target(MIN_GAUSSIANS, 10**6) is None  # at the floor already
    assert rate.final_target(100, 1000) is None
    # 100 bits over at 11 bits a Gaussian: drop the 9.1 Gaussians that cost, plus the margin
    assert rate.final_target(100, 1100) == 100 - math.ceil(1.05 * 100 / 11) == 90
    assert rate.final_target(20, 10**6) == MIN_GAUSSIANS


def test_log_covariance_and_scales_and_rotation_are_inverse():
    generator = torch.Generator().manual_seed(0)
    log_scale = torch.rand(200, 2, generator=generator, dtype=torch.float64) * 6 - 2
    rotation = (torch.rand(200, generator=generator, dtype=torch.float64) - 0.5) * math.pi * 0.999
    scales, angle = scales_and_rotation(log_covariance(log_scale, rotation))
    # The same ellipse, whichever axis comes first: compare covariances.
    assert torch.allclose(log_covariance(scales.log(), angle), log_covariance(log_scale, rotation), atol=1e-6)
    assert (scales[:, 0] >= scales[:, 1]).all()


def test_position_grid_snap_index_and_pixels_agree():
    grid = PositionGrid(width=97, height=53, bits=8)
    xy = torch.rand(500, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor([97.0, 53.0])
    cols, rows = grid_index(grid, xy)
    pixels = grid.to_pixels(cols.long().numpy(), rows.long().numpy())
    assert np.allclose(snap(grid, xy).detach().numpy(), pixels, atol=1e-4)
    assert (np.abs(pixels - xy.numpy()) <= np.array(grid.steps()) / 2 + 1e-5).all()
    assert cols.max() <= grid.levels and rows.min() >= 0


def _random_form(rows_sorted: bool, per_gaussian: bool, n: int = 64) -> QuantizedGaussians:
    rng = np.random.default_rng(3)
    layout = Layout(width=80, height=60, blend_mode="sum" if rows_sorted else "alpha", rows_sorted=rows_sorted,
                    shape_per_gaussian=per_gaussian, color_per_gaussian=False, parametric_models=False, background=None, position_bits=10, shape_bits=5 if per_gaussian else 8,
                    color_bits=8, shape_ranges=((-1.0, 3.0), (-0.5, 0.5), (-1.0, 3.0)),
                    color_ranges=((0.0, 1.0), (-0.25, 1.0), (0.0, 1.5), (0.0, 1.0)))
    xy = torch.tensor(rng.random((n, 2)) * [80, 60], dtype=torch.float32)
    k_shape = n if per_gaussian else 8
    shapes = rng.random((k_shape, 3)) * [4, 1, 4] + [-1, -0.5, -1]
    colors = rng.random((16, 4)) * [1, 1.25, 1.5, 1] + [0, -0.25, 0, 0]
    return from_trained(layout, xy, shapes.astype(np.float32), rng.integers(0, k_shape, n),
                        colors.astype(np.float32), rng.integers(0, 16, n))


@pytest.mark.parametrize("rows_sorted, per_gaussian", [(True, True), (False, False), (True, False)])
def test_quantized_form_round_trips_through_the_file(rows_sorted, per_gaussian):
    q = _random_form(rows_sorted, per_gaussian)
    data = write_bitstream(q)
    assert measure(q) == len(data) * 8
    back = read_bitstream(data)
    for name in ("x", "y", "shape_codebook", "shape_index", "color_codebook", "color_index"):
        assert np.array_equal(getattr(back, name), getattr(q, name)), name
    assert back.layout.width == 80 and back.layout.rows_sorted == rows_sorted
    assert back.layout.shape_ranges == q.layout.shape_ranges and back.layout.n_gaussians == len(q)
    if rows_sorted:
        assert (np.diff(q.y) >= 0).all()
    for ours, theirs in zip(to_render_inputs(q), to_render_inputs(back)):
        assert np.array_equal(ours, theirs)


def test_render_inputs_are_the_dequantised_values():
    q = _random_form(True, True)
    means, scales, rotations, colors, opacities = to_render_inputs(q)
    assert means.shape == (len(q), 2) and scales.shape == (len(q), 2) and rotations.shape == (len(q),)
    assert (means[:, 0] <= 80).all() and (means[:, 1] <= 60).all() and (scales > 0).all()
    assert colors.min() >= -0.25 - 1e-6 and opacities.max() <= 1.0
