"""The rate term of the loss: a differentiable count of the bits the per-Gaussian columns will cost.

The coder codes each per-Gaussian column (shape and colour values, ``codec.format.bitstream``) under the
histogram of that column's own symbols, where a column costs N times the empirical entropy of its symbols,
or (format version 3) under a two-sided geometric model where that costs less in all: a payload a few
percent above the entropy for side information of ~30 bits instead of hundreds. The entropy is what is
counted here either way; a rate term under the geometric models themselves gave no fewer bits and a worse
picture (docs/method.md).
``column_bits`` is that count with a soft histogram: each value spreads over its two nearest grid points
in proportion to its distance (linear interpolation), so a value moving toward a crowded symbol lowers
the bits smoothly. Values on the grid (the straight-through values of the quantised phase) land whole on
their symbol, and the count is then exactly the entropy the coder's histogram gives them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from codec.format.streams import COLOR_VALUES, ValueColumns
from codec.format.values import Layout, grid_step

# ``Method.rate_weight`` is the weight at this target; at others it scales with REFERENCE_BPP / target: the
# slope of distortion against rate falls as the rate grows (about D / R), so a weight fixed in bits per
# pixel would weigh the rate ever more heavily at higher targets.
REFERENCE_BPP = 0.125
# The narrowest range the count resolves, per stream: a colour column narrower than 2.5 levels of 8 bits
# costs the picture nothing worth counting, on a grid as fine as its own. Shapes have no floor: every shape's
# xy value starts at 0 (no rotation), and a floor there kept them from turning early.
MIN_SPAN = {COLOR_VALUES: 0.01}


def weight_at(rate_weight: float, target_bpp: float) -> float:
    return rate_weight * REFERENCE_BPP / target_bpp


def column_bits(
    values: Tensor,  # [N, D] one column per Gaussian attribute
    ranges: Tensor,  # [D, 2] (min, max) of the uniform grid of each column
    bits: int,
    min_span: float = 0.0,  # the narrowest range resolved (its stream's MIN_SPAN)
) -> Tensor:  # [] bits of the D columns' symbols under their own histograms
    n, columns = values.shape
    if n == 0:
        return values.sum()
    levels = 2**bits - 1
    low_edge = ranges[:, 0].to(values.dtype)
    span = (ranges[:, 1] - ranges[:, 0]).to(values.dtype)
    # The format's step, but never finer than min_span / levels: the soft count's gradient grows as 1 / step,
    # and on a nearly constant column (a flat image's colours over its background) it flung the values apart
    # faster than the distortion could hold them.
    step = grid_step(span, bits, floor=min_span, where=torch.where)
    position = ((values - low_edge) / step).clamp(0, levels)  # [N, D] in symbols
    lower = position.detach().floor().clamp(max=max(levels - 1, 0))
    upper_share = position - lower  # [N, D]: its gradient is what moves values between symbols
    index = lower.long().T  # [D, N]
    counts = torch.zeros(columns, levels + 2, dtype=values.dtype, device=values.device)
    counts = counts.scatter_add(1, index, (1 - upper_share).T).scatter_add(1, index + 1, upper_share.T)
    # n * H = sum_k c_k log2(n / c_k). Below one count a symbol's cost is held at log2 n bits (what its one
    # use costs): the exact entropy's gradient grows without bound as a count goes to zero, and would fling
    # the tails' values inward. Integral counts (values on the grid) are unaffected.
    return (counts * (math.log2(n) - torch.log2(counts.clamp(min=1)))).sum()


def bits_per_pixel(columns: list[tuple[ValueColumns, Tensor, Tensor]], layout: Layout,
                   pixels: int) -> Tensor:  # [] the rate term
    """``column_bits`` of each (stream, values [N, D], ranges [D, 2]) on its stream's grid, per pixel."""
    return sum(column_bits(values, ranges, stream.group.bits(layout), MIN_SPAN.get(stream, 0.0))
               for stream, values, ranges in columns) / pixels
