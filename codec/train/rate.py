"""Rate control: the budget, the plan made from it, and the measure-and-adjust steps the encoder calls.

Up front, the plan fills the budget with a model of the real stream: the header and each coded stream's
own estimate (``codec.format.streams``: models, codebooks, entropy of row gaps and indices). During
training the encoder measures the real stream (``measure``) and asks ``RateControl`` for the count that
fits: growth aims at it while fitting, pruning enforces it once quantised, and the final write prunes
whatever still overshoots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from codec.format.bitstream import CRC_BYTES, HEADER_BYTES, write_bitstream
from codec.format.streams import STREAMS, present
from codec.format.values import QuantizedGaussians
from codec.train.method import Method

MIN_GAUSSIANS = 16
MIN_K, MAX_K = 8, 256
CODEBOOK_BITS = 8  # per column of a K-means codebook's entries (the per-Gaussian bits are the Method's)
BUDGET_FILL = 0.985  # aim just under the budget: training after a measurement moves the size a little
BUDGET_FIT_ROUNDS = 4  # measure-and-prune rounds of the Gaussian count when quantisation starts
# The final write drops this much more than the measured excess predicts (Gaussians differ in cost), so
# one pass usually lands under the budget.
FINAL_PRUNE_MARGIN = 1.05


@dataclass(frozen=True)
class RatePlan:
    """The counts and widths the plan picked: the format fields the coded streams depend on."""

    n_gaussians: int
    k_shape: int  # 0: shapes coded per Gaussian
    k_color: int  # 0: colours coded per Gaussian
    position_bits: int
    rows_sorted: bool
    shape_bits: int
    color_bits: int
    parametric_models: bool

    @property
    def shape_per_gaussian(self) -> bool:
        return self.k_shape == 0

    @property
    def color_per_gaussian(self) -> bool:
        return self.k_color == 0


def plan_rate(target_bits: float, height: int, width: int, method: Method) -> RatePlan:
    """Largest Gaussian count whose modelled stream size fits ``target_bits`` under ``method``."""
    def plan(n: int) -> RatePlan:
        return _plan_for(n, method)

    low, high = MIN_GAUSSIANS, max(MIN_GAUSSIANS, height * width // 4)
    while low < high:  # bits grow with n: binary search the largest n that fits
        mid = (low + high + 1) // 2
        if estimate_bits(plan(mid)) <= target_bits:
            low = mid
        else:
            high = mid - 1
    return plan(low)


def _plan_for(n: int, method: Method) -> RatePlan:
    # Larger codebooks pay off at higher rates (the paper's ablation): a fixed number of Gaussians per entry
    # (FormatConfig.gaussians_per_entry).
    form = method.format
    k = int(min(MAX_K, max(MIN_K, 2 ** round(math.log2(max(n / form.gaussians_per_entry, 1))))))
    shapes, colors = form.shape_per_gaussian, form.color_per_gaussian
    # Order-free (accumulated) blending is exactly when the Gaussians can be stored sorted by row.
    return RatePlan(n, 0 if shapes else k, 0 if colors else k, form.position_bits, form.blend_mode == "sum",
                    form.shape_bits if shapes else CODEBOOK_BITS, form.color_bits if colors else CODEBOOK_BITS,
                    form.parametric_models)


def estimate_bits(plan: RatePlan) -> float:
    n = plan.n_gaussians
    per_gaussian, side = 0.0, 3 * math.sqrt(n)
    for stream in present(STREAMS, plan):
        stream_per_gaussian, stream_side = stream.plan_bits(plan)
        per_gaussian, side = per_gaussian + stream_per_gaussian, side + stream_side
    return 8 * (HEADER_BYTES + CRC_BYTES) + n * per_gaussian + side + 32


def measure(q: QuantizedGaussians) -> int:
    """The real size, in bits, of the file these Gaussians make."""
    return len(write_bitstream(q)) * 8


@dataclass(frozen=True)
class RateControl:
    """One target and the counts that keep the real stream within it."""

    budget_bits: float
    plan: RatePlan

    @classmethod
    def for_image(cls, target_bpp: float, height: int, width: int, method: Method) -> "RateControl":
        budget = target_bpp * height * width
        return cls(budget, plan_rate(budget, height, width, method))

    def _fitting(self, n: int, bits: int) -> float:  # the count whose stream would fill BUDGET_FILL of it
        return n * BUDGET_FILL * self.budget_bits / bits

    def growth_target(self, n: int, bits: int) -> int:
        """While fitting: the count that fills the budget, extrapolated from ``n`` Gaussians' ``bits``."""
        return max(MIN_GAUSSIANS, round(self._fitting(n, bits)))

    def prune_target(self, n: int, bits: int) -> int | None:
        """Once quantised: the count to prune to, or None when ``bits`` fit (or ``n`` is at the floor)."""
        if bits <= BUDGET_FILL * self.budget_bits:
            return None
        keep = max(MIN_GAUSSIANS, math.floor(self._fitting(n, bits)))
        return keep if keep < n else None

    def final_target(self, n: int, bits: int) -> int | None:
        """At the write: the count to prune to, or None when the file fits (or ``n`` is at the floor)."""
        excess = bits - self.budget_bits
        if excess <= 0 or n <= MIN_GAUSSIANS:
            return None
        return n - min(n - MIN_GAUSSIANS, max(1, math.ceil(FINAL_PRUNE_MARGIN * excess / (bits / n))))
