"""The quantised form: what a .gsi file holds, as integers plus float16 column ranges, and both ways to it.

* from trained tensors: ``PositionGrid.index`` (positions), ``quantize_uniform`` of codebooks and shapes;
* to render inputs: ``to_render_inputs`` (what the decoder draws).

Shapes are stored as the matrix logarithm of the covariance, log S = R diag(2 log s) R^T: unique and
continuous (no half-turn or axis-swap ambiguity), so K-means distances between shapes are meaningful.
This module imports no optimiser and no trainable model; the decoder needs nothing else from the codec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


SHAPE_COLUMNS = ("log_cov_xx", "log_cov_xy", "log_cov_yy")
COLOR_COLUMNS = ("red", "green", "blue", "opacity")
BLEND_MODES = ("alpha", "sum")
# Decoded values must stay in these bounds (standard deviations from exp(-8) to exp(10) px).
RANGE_BOUNDS = {"log_cov_xx": (-16.0, 20.0), "log_cov_xy": (-18.0, 18.0), "log_cov_yy": (-16.0, 20.0),
                "red": (-4.0, 5.0), "green": (-4.0, 5.0), "blue": (-4.0, 5.0), "opacity": (0.0, 1.0)}

Ranges = tuple[tuple[float, float], ...]  # per column: (min, max), float16-representable


def background_color(background: tuple[int, int, int] | None) -> np.ndarray:  # [3] float32
    """What every pixel of the accumulated sum starts from: the background's bytes / 255, or black."""
    return np.array(background or (0, 0, 0), dtype=np.float32) / 255


def format_bounds(columns: tuple[str, ...]) -> np.ndarray:  # [D, 2] (low, high) the format accepts per column
    return np.array([RANGE_BOUNDS[c] for c in columns], dtype=np.float32)


@dataclass(frozen=True)
class Layout:
    """How the Gaussians of one file are coded: the header fields that are not counts or lengths."""

    width: int
    height: int
    blend_mode: str  # "alpha" (ordered blending) or "sum" (accumulated, order-free)
    rows_sorted: bool  # stored in non-decreasing row order, rows coded as gaps (order-free blending only)
    shape_per_gaussian: bool  # shape symbols coded per Gaussian (scalar quantisation), not via a codebook
    color_per_gaussian: bool  # colour symbols likewise (format version 2)
    parametric_models: bool  # each histogram may be a two-sided geometric instead (format version 3)
    # (r, g, b) bytes: a colour of byte / 255 under the accumulated sum, on every pixel (format version 4);
    # None: black, as in versions 1 to 3
    background: tuple[int, int, int] | None
    position_bits: int
    shape_bits: int
    color_bits: int
    shape_ranges: Ranges  # per SHAPE_COLUMNS
    color_ranges: Ranges  # per COLOR_COLUMNS

    @property
    def grid(self) -> "PositionGrid":
        return PositionGrid(self.width, self.height, self.position_bits)

    def range_arrays(self) -> tuple[np.ndarray, np.ndarray]:  # ([3, 2], [4, 2]) float32 shape and colour ranges
        return np.array(self.shape_ranges, dtype=np.float32), np.array(self.color_ranges, dtype=np.float32)


@dataclass
class QuantizedGaussians:
    """Everything a .gsi file holds besides its header's lengths, in rendering order."""

    layout: Layout
    x: np.ndarray  # [N] int, position grid column
    y: np.ndarray  # [N] int, position grid row
    shape_codebook: np.ndarray  # [k_shape, 3] int; with shape_per_gaussian: [N, 3], row i for Gaussian i
    shape_index: np.ndarray  # [N] int; with shape_per_gaussian: 0 .. N-1
    color_codebook: np.ndarray  # [k_color, 4] int; with color_per_gaussian: [N, 4], row i for Gaussian i
    color_index: np.ndarray  # [N] int; with color_per_gaussian: 0 .. N-1

    def __len__(self) -> int:
        return len(self.x)

    @property
    def k_shape(self) -> int:  # 0 when shapes are coded per Gaussian
        return 0 if self.layout.shape_per_gaussian else len(self.shape_codebook)

    @property
    def k_color(self) -> int:  # 0 when colours are coded per Gaussian
        return 0 if self.layout.color_per_gaussian else len(self.color_codebook)


@dataclass(frozen=True)
class PositionGrid:
    """The one position grid: 2^bits levels per axis from 0 to the image side (paper eq. 7, min 0)."""

    width: int
    height: int
    bits: int

    @property
    def levels(self) -> int:
        return (1 << self.bits) - 1

    def steps(self) -> tuple[float, float]:  # pixels between grid points, per axis
        return self.width / self.levels, self.height / self.levels

    def index(self, xy: Tensor) -> tuple[Tensor, Tensor]:  # [N, 2] pixels -> ([N], [N]) integral columns, rows
        step_x, step_y = self.steps()
        cols = torch.round(xy[:, 0].clamp(0, self.width) / step_x)
        rows = torch.round(xy[:, 1].clamp(0, self.height) / step_y)
        return cols.clamp(0, self.levels), rows.clamp(0, self.levels)

    def snap(self, xy: Tensor) -> Tensor:  # [N, 2], forward on the grid, backward identity (straight-through)
        """The positions the decoder will see, computed on the autograd path in the tensor's precision."""
        cols, rows = self.index(xy)
        step_x, step_y = self.steps()  # Python floats, not a tensor: a host-to-device copy would wait for the GPU
        snapped = torch.stack([cols * step_x, rows * step_y], 1)
        return xy + (snapped - xy).detach()

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:  # [N], [N] int -> [N, 2] float64 pixels
        step_x, step_y = self.steps()
        return np.stack([x * step_x, y * step_y], 1)


def half_range(values: Tensor) -> Tensor:  # [M, D] float32 -> [D, 2] float32 (min, max), float16-representable
    """Per-column (min, max), widened to the nearest float16 values so the stored range still covers them.

    Computed on the values' device, so the quantised training step never reads its codebook back. A
    float32 value rounds to float16 once, to nearest even, exactly as numpy's direct float64 -> float16
    rounding of the same value does; widening steps the float16 bits (``_next_half``), as nextafter does."""
    values = values.detach()
    lo, hi = values.amin(dim=0), values.amax(dim=0)
    lo16, hi16 = lo.to(torch.float16), hi.to(torch.float16)
    lo16 = torch.where(lo16.to(lo.dtype) > lo, _next_half(lo16, up=False), lo16)
    hi16 = torch.where(hi16.to(hi.dtype) < hi, _next_half(hi16, up=True), hi16)
    return torch.stack([lo16, hi16], dim=1).to(torch.float32)


def _next_half(x: Tensor, up: bool) -> Tensor:  # float16 -> the next float16 toward +inf (up) or -inf
    """nextafter on the bit pattern: torch.nextafter has no float16 kernel on every device. Sign and
    magnitude: away from zero is magnitude + 1, toward it magnitude - 1; from either zero, the smallest
    subnormal of the direction's sign (NaN and the infinities never need a step here)."""
    bits = x.view(torch.int16).to(torch.int32) & 0xFFFF
    negative, zero = bits >= 0x8000, (bits & 0x7FFF) == 0
    away = negative != up  # stepping down from a negative, or up from a positive, grows the magnitude
    stepped = torch.where(zero, 0x0001 if up else 0x8001, torch.where(away, bits + 1, bits - 1))
    return torch.where(stepped >= 0x8000, stepped - 0x10000, stepped).to(torch.int16).view(torch.float16)


def quantize_uniform(
    values: np.ndarray,  # [M, D]
    ranges: np.ndarray,  # [D, 2] (min, max)
    bits: int,
) -> np.ndarray:  # [M, D] int64 in [0, 2^bits - 1]
    """Paper eq. 7: q = round((theta - min) / S), S = (max - min) / (2^b - 1)."""
    step = grid_steps(ranges, bits)
    levels = 2**bits - 1
    return np.clip(np.round((values - ranges[:, 0]) / step), 0, levels).astype(np.int64)


def dequantize_uniform(
    symbols: np.ndarray,  # [M, D] int
    ranges: np.ndarray,  # [D, 2]
    bits: int,
) -> np.ndarray:  # [M, D] float32
    """Paper eq. 8: theta = q * S + min."""
    return (symbols * grid_steps(ranges, bits) + ranges[:, 0]).astype(np.float32)


def grid_steps(ranges: np.ndarray, bits: int) -> np.ndarray:  # [D] float64 step per column
    span = ranges[:, 1].astype(np.float64) - ranges[:, 0].astype(np.float64)
    return np.where(span > 0, span, 1.0) / (2**bits - 1)


def from_trained(
    layout: Layout,  # with the ranges of the values below
    xy: Tensor,  # [N, 2] pixels, training order
    shapes: np.ndarray,  # [k_shape, 3] float codebook; with layout.shape_per_gaussian: [N, 3], training order
    shape_index: np.ndarray,  # [N] into shapes (ignored with shape_per_gaussian)
    colors: np.ndarray,  # [k_color, 4] float codebook; with layout.color_per_gaussian: [N, 4], training order
    color_index: np.ndarray,  # [N] into colors (ignored with color_per_gaussian)
) -> QuantizedGaussians:
    """Positions onto the grid and values onto their uniform grids, in file order: sorted by grid row,
    then column, when rows are coded as gaps (about log2(N!) bits less in all); otherwise training order
    (alpha blending depends on it)."""
    cols, rows = layout.grid.index(xy)
    x, y = cols.long().cpu().numpy(), rows.long().cpu().numpy()
    order = np.lexsort((x, y)) if layout.rows_sorted else np.arange(len(x))
    if layout.shape_per_gaussian:
        shapes, shape_index = shapes[order], np.arange(len(order))
    else:
        shape_index = shape_index[order]
    if layout.color_per_gaussian:
        colors, color_index = colors[order], np.arange(len(order))
    else:
        color_index = color_index[order]
    shape_ranges, color_ranges = layout.range_arrays()
    return QuantizedGaussians(
        layout=layout, x=x[order], y=y[order],
        shape_codebook=quantize_uniform(shapes, shape_ranges, layout.shape_bits), shape_index=shape_index,
        color_codebook=quantize_uniform(colors, color_ranges, layout.color_bits), color_index=color_index,
    )


def log_covariance(
    log_scale: Tensor,  # [N, 2]
    rotation: Tensor,  # [N]
) -> Tensor:  # [N, 3] (xx, xy, yy) of log S = R diag(2 log s) R^T
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    l1, l2 = 2 * log_scale[:, 0], 2 * log_scale[:, 1]
    return torch.stack([cos * cos * l1 + sin * sin * l2, cos * sin * (l1 - l2), sin * sin * l1 + cos * cos * l2], 1)


def scales_and_rotation(log_cov: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3] -> ([N, 2] scales, [N] rotation)
    """Inverse of ``log_covariance`` (closed-form eigen-decomposition of a symmetric 2 x 2 matrix)."""
    xx, xy, yy = log_cov.unbind(1)
    mean, half_diff = (xx + yy) / 2, (xx - yy) / 2
    radius = torch.sqrt(half_diff * half_diff + xy * xy + 1e-12)  # the epsilon keeps gradients finite when round
    scales = torch.stack([torch.exp((mean + radius) / 2), torch.exp((mean - radius) / 2)], 1)
    return scales, 0.5 * torch.atan2(2 * xy, xx - yy)


def to_render_inputs(
    q: QuantizedGaussians, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # means [N,2], scales [N,2], rotations [N], colors [N,3], opacities [N]
    """What the decoder renders: codebooks and positions back to floats, in file order."""
    layout = q.layout
    xy = layout.grid.to_pixels(q.x, q.y)
    shape_ranges, color_ranges = layout.range_arrays()
    shape = dequantize_uniform(q.shape_codebook, shape_ranges, layout.shape_bits)[q.shape_index]
    color = dequantize_uniform(q.color_codebook, color_ranges, layout.color_bits)[q.color_index]
    as_tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    scales, rotation = scales_and_rotation(as_tensor(shape))
    return as_tensor(xy), scales, rotation, as_tensor(color[:, :3]), as_tensor(color[:, 3])
