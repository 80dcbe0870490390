"""Metrics of the rate–distortion benchmark: MS-SSIM, bpp, curve interpolation, Bjøntegaard deltas; PSNR is
``codec.psnr``, the one the encoder reports.

Everything here is plain numpy (MS-SSIM uses pytorch-msssim, imported lazily), so the numbers can be
checked against hand-computed values.

Conventions:
* PSNR is RGB: one MSE over all pixels and all three channels of two 8-bit images, peak 255.
* bpp is the size of the real file: ``bytes * 8 / (width * height)``.
* A rate–distortion curve is a list of ``(bpp, value)`` points; it is sorted by bpp before use.
* BD-rate is in percent (negative: the test codec needs fewer bits for the same quality);
  BD-PSNR is in dB (positive: the test codec is better at the same rate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

Curve = Sequence[tuple[float, float]]

# MS-SSIM with the default 11-pixel window and 5 scales needs a smaller side above (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161


def bpp(n_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``n_bytes`` holding a ``width`` x ``height`` image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad image size {width}x{height}")
    return n_bytes * 8.0 / (width * height)


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, data_range 255, float tensors) of two [H, W, 3] uint8 images.

    NaN when the image is too small for the standard 5-scale, 11-pixel-window configuration
    (smaller side < 161 pixels), rather than a number from a different configuration.
    """
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def to_tensor(a: np.ndarray) -> torch.Tensor:  # [1, 3, H, W] float32 in [0, 255]
        return torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None]

    with torch.no_grad():
        return float(_ms_ssim(to_tensor(reference), to_tensor(test), data_range=255, size_average=True))


def _sorted_points(curve: Iterable[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The finite points of ``curve`` sorted by bpp; of several points at one bpp the best value is kept."""
    best: dict[float, float] = {}
    for x, y in curve:
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        best[float(x)] = max(float(y), best.get(float(x), -math.inf))
    xs = np.array(sorted(best), dtype=np.float64)
    return xs, np.array([best[x] for x in xs], dtype=np.float64)


def interpolate(curve: Iterable[tuple[float, float]], rate: float, tolerance: float = 0.0) -> float | None:
    """The value of ``curve`` at ``rate``, linear in bpp between the two points that bracket it.

    ``None`` when the curve does not reach ``rate``. With ``tolerance`` > 0 a rate at most that
    fraction outside the curve's range (e.g. 0.042 against a lowest point at 0.043 with
    tolerance 0.1) is extrapolated linearly from the end segment (or, for a single point, given
    that point's value): codecs that aim at a rate miss it by a little either way.
    """
    xs, ys = _sorted_points(curve)
    if len(xs) == 0:
        return None
    lo, hi = xs[0], xs[-1]
    if lo <= rate <= hi:
        if len(xs) == 1:
            return float(ys[0])
        i = int(np.searchsorted(xs, rate, side="right")) - 1
        i = min(max(i, 0), len(xs) - 2)
        x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
        return float(y0 + (y1 - y0) * (rate - x0) / (x1 - x0))
    if tolerance <= 0:
        return None
    if rate < lo and rate >= lo / (1.0 + tolerance):
        end = (0, 1)
    elif rate > hi and rate <= hi * (1.0 + tolerance):
        end = (-2, -1)
    else:
        return None
    if len(xs) == 1:
        return float(ys[0])
    (i, j) = end
    return float(ys[i] + (ys[j] - ys[i]) * (rate - xs[i]) / (xs[j] - xs[i]))


def clip_curve(curve: Iterable[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    """The points of ``curve`` within [lo, hi] plus the nearest point on each side (the bracketing ones)."""
    xs, ys = _sorted_points(curve)
    inside = [k for k, x in enumerate(xs) if lo <= x <= hi]
    below = [k for k, x in enumerate(xs) if x < lo]
    above = [k for k, x in enumerate(xs) if x > hi]
    keep = ([below[-1]] if below else []) + inside + ([above[0]] if above else [])
    return [(float(xs[k]), float(ys[k])) for k in keep]


def _bd_inputs(anchor: Curve, test: Curve) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    ra, qa = _sorted_points(anchor)
    rt, qt = _sorted_points(test)
    if len(ra) < 2 or len(rt) < 2 or np.any(ra <= 0) or np.any(rt <= 0):
        return None
    return np.log(ra), qa, np.log(rt), qt


def _mean_of_fit(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Mean over [lo, hi] of the polynomial (cubic, or lower with fewer than 4 points) fitted to y(x)."""
    degree = min(3, len(x) - 1)
    poly = np.polyint(np.polyfit(x, y, degree))
    return float((np.polyval(poly, hi) - np.polyval(poly, lo)) / (hi - lo))


def bd_rate(anchor: Curve, test: Curve) -> float | None:
    """Bjøntegaard delta rate of ``test`` against ``anchor``, in percent.

    log(rate) is fitted as a cubic in PSNR for each curve (lower degree with fewer than 4 points) and
    the fits are averaged over the overlapping PSNR range. ``None`` without an overlap.
    """
    inputs = _bd_inputs(anchor, test)
    if inputs is None:
        return None
    la, qa, lt, qt = inputs
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if not hi > lo:
        return None
    diff = _mean_of_fit(qt, lt, lo, hi) - _mean_of_fit(qa, la, lo, hi)
    return float((math.exp(diff) - 1.0) * 100.0)


def bd_psnr(anchor: Curve, test: Curve) -> float | None:
    """Bjøntegaard delta PSNR of ``test`` against ``anchor``, in dB.

    PSNR is fitted as a cubic in log(rate) for each curve and the fits are averaged over the
    overlapping log-rate range. ``None`` without an overlap.
    """
    inputs = _bd_inputs(anchor, test)
    if inputs is None:
        return None
    la, qa, lt, qt = inputs
    lo, hi = max(la.min(), lt.min()), min(la.max(), lt.max())
    if not hi > lo:
        return None
    return _mean_of_fit(lt, qt, lo, hi) - _mean_of_fit(la, qa, lo, hi)


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """The mean of ``values``; ``None`` when any is missing (a codec that misses a rate on one image)."""
    values = list(values)
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(np.mean(values))


def median_or_none(values: Iterable[float | None]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(values)) if values else None
