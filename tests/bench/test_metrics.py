"""The benchmark's metrics against hand-computed values."""

import math

import numpy as np
import pytest

from bench import metrics
from codec import psnr

ANCHOR = [(0.05, 20.0), (0.1, 23.5), (0.2, 26.0), (0.4, 28.0), (0.8, 29.5)]  # concave, as real RD curves are


def test_psnr_the_benchmark_uses_of_a_known_error():
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.ones((4, 5, 3), np.uint8)  # MSE 1 -> 10 log10(255^2)
    assert psnr(a, b) == pytest.approx(48.130803608679, abs=1e-9)
    c = a.copy()
    c[0, 0, 0] = 60  # one error of 60 among 60 values: MSE 60
    assert psnr(a, c) == pytest.approx(10 * math.log10(255**2 / 60), abs=1e-12)


def test_psnr_uses_all_channels_and_handles_equal_and_mismatched_images():
    a = np.full((2, 2, 3), 100, np.uint8)
    b = a.copy()
    b[..., 2] = 110  # only blue differs by 10: MSE = 100 / 3
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 3 / 100))
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a, np.zeros((2, 3, 3), np.uint8))


def test_bpp_is_file_bits_over_pixels():
    assert metrics.bpp(1000, 100, 80) == 1.0
    assert metrics.bpp(2064, 768, 512) == pytest.approx(0.04199, abs=1e-5)
    with pytest.raises(ValueError):
        metrics.bpp(10, 0, 5)


def test_interpolate_is_linear_in_bpp_between_bracketing_points():
    curve = [(0.3, 30.0), (0.1, 20.0), (0.2, 22.0)]  # unsorted on purpose
    assert metrics.interpolate(curve, 0.15) == pytest.approx(21.0)
    assert metrics.interpolate(curve, 0.25) == pytest.approx(26.0)
    assert metrics.interpolate(curve, 0.1) == 20.0
    assert metrics.interpolate(curve, 0.3) == 30.0
    assert metrics.interpolate(curve, 0.05) is None  # below the lowest point: the codec cannot reach it
    assert metrics.interpolate(curve, 0.31) is None
    assert metrics.interpolate([], 0.1) is None


def test_interpolate_tolerance_extends_the_end_segments_a_little():
    curve = [(0.1, 20.0), (0.2, 22.0)]
    assert metrics.interpolate(curve, 0.095, tolerance=0.1) == pytest.approx(19.9)
    assert metrics.interpolate(curve, 0.21, tolerance=0.1) == pytest.approx(22.2)
    assert metrics.interpolate(curve, 0.08, tolerance=0.1) is None  # 0.1 / 0.08 = 1.25 > 1.1
    assert metrics.interpolate([(0.1, 20.0)], 0.105, tolerance=0.1) == 20.0
    assert metrics.interpolate([(0.1, 20.0)], 0.1) == 20.0


def test_interpolate_skips_missing_values_and_keeps_the_best_of_equal_rates():
    curve = [(0.1, 20.0), (0.1, 21.0), (0.2, None), (0.3, 25.0), (0.4, float("nan"))]
    assert metrics.interpolate(curve, 0.2) == pytest.approx(23.0)


def test_clip_curve_keeps_the_bracketing_points():
    curve = [(0.01, 1.0), (0.02, 2.0), (0.05, 5.0), (0.3, 30.0), (0.6, 60.0), (0.9, 90.0)]
    assert metrics.clip_curve(curve, 0.04, 0.5) == [(0.02, 2.0), (0.05, 5.0), (0.3, 30.0), (0.6, 60.0)]


@pytest.mark.parametrize("factor", [0.8, 1.25, 0.5])
def test_bd_rate_of_a_curve_scaled_in_rate_is_that_factor(factor):
    test = [(r * factor, q) for r, q in ANCHOR]
    assert metrics.bd_rate(ANCHOR, test) == pytest.approx((factor - 1) * 100, abs=1e-8)
    assert metrics.bd_rate(ANCHOR, ANCHOR) == pytest.approx(0.0, abs=1e-9)


def test_bd_psnr_of_a_curve_shifted_by_one_db_is_one_db():
    test = [(r, q + 1.0) for r, q in ANCHOR]
    assert metrics.bd_psnr(ANCHOR, test) == pytest.approx(1.0, abs=1e-9)
    assert metrics.bd_psnr(test, ANCHOR) == pytest.approx(-1.0, abs=1e-9)


def test_bd_psnr_of_lines_in_log_rate_matches_the_integral():
    # anchor: q = 30 + 5 ln r, test: q = 30 + 6 ln r on [0.1, 0.8]; mean difference = mean of ln r
    rates = [0.1, 0.2, 0.4, 0.8]
    anchor = [(r, 30 + 5 * math.log(r)) for r in rates]
    test = [(r, 30 + 6 * math.log(r)) for r in rates]
    assert metrics.bd_psnr(anchor, test) == pytest.approx((math.log(0.1) + math.log(0.8)) / 2, abs=1e-9)


def test_bd_only_over_the_overlap_and_none_without_one():
    shifted = [(r * 2, q + 3) for r, q in ANCHOR]  # overlaps in rate over [0.1, 0.8], PSNR over [23, 29.5]
    assert metrics.bd_rate(ANCHOR, shifted) is not None
    far = [(r * 100, q + 50) for r, q in ANCHOR]
    assert metrics.bd_rate(ANCHOR, far) is None
    assert metrics.bd_psnr(ANCHOR, far) is None
    assert metrics.bd_rate(ANCHOR, [(0.1, 20.0)]) is None  # one point is no curve


def test_bd_with_two_or_three_points_uses_a_lower_degree_fit():
    anchor = [(0.1, 20.0), (0.2, 23.0), (0.4, 26.0)]
    assert metrics.bd_rate(anchor, [(r * 0.9, q) for r, q in anchor]) == pytest.approx(-10.0, abs=1e-8)
    assert metrics.bd_psnr(anchor[:2], [(r, q + 0.5) for r, q in anchor[:2]]) == pytest.approx(0.5, abs=1e-9)


def test_mean_and_median_treat_missing_values():
    assert metrics.mean_or_none([1.0, 2.0, 6.0]) == 3.0
    assert metrics.mean_or_none([1.0, None]) is None
    assert metrics.mean_or_none([1.0, float("nan")]) is None
    assert metrics.mean_or_none([]) is None
    assert metrics.median_or_none([3.0, None, 1.0, 2.0]) == 2.0
    assert metrics.median_or_none([None]) is None


def test_ms_ssim_is_one_for_equal_images_and_lower_for_noisy_ones():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (176, 192, 3), dtype=np.uint8)
    noisy = np.clip(image.astype(int) + rng.integers(-40, 41, image.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim(image, image) == pytest.approx(1.0, abs=1e-5)
    value = metrics.ms_ssim(image, noisy)
    assert 0.0 < value < 0.99


def test_ms_ssim_is_nan_below_the_standard_size():
    small = np.zeros((64, 200, 3), np.uint8)
    assert math.isnan(metrics.ms_ssim(small, small))
