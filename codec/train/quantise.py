"""Quantisation inside training: K-means codebooks whose entries are then trained, straight-through
snapping to the format's uniform grids, and ``QuantisedModel``, the quantised phase's form of the Gaussians.

The grids themselves (paper eq. 7-8) belong to the format: ``codec.format.values``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from codec.train.gaussians import Gaussians
from codec.decode.dequantise import scales_and_rotation
from codec.format.values import COLOR_COLUMNS, SHAPE_COLUMNS, Layout, PositionGrid, QuantizedGaussians, format_bounds
from codec.format.streams import COLOR_VALUES, SHAPE_VALUES, ValueColumns
from codec.format.values import grid_step, quantize_uniform

LLOYD_ITERATIONS = 10


def kmeans(
    points: Tensor,  # [N, D]
    k: int,
    *,
    init: Tensor | None = None,  # [k, D] centroids to start from (e.g. the previous codebook)
    iterations: int = LLOYD_ITERATIONS,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:  # ([k, D] centroids, [N] int64 assignment)
    """Lloyd's algorithm, vectorised: distances by cdist, centroid sums by index_add.

    Starts from ``init`` or from k-means++-like distinct samples; an empty cluster is re-seeded with the
    point farthest from its centroid, so all k entries stay in use.
    """
    points = points.detach()
    n = points.shape[0]
    k = min(k, n)
    centroids = init.detach().clone() if init is not None else _initial_centroids(points, k, generator)
    for _ in range(iterations):
        assign = torch.cdist(points, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(points.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            distance = (points - centroids[assign]).norm(dim=1)
            farthest = distance.topk(int(empty.sum())).indices
            centroids[empty] = points[farthest]
    assign = torch.cdist(points, centroids).argmin(dim=1)
    return centroids, assign


def _initial_centroids(points: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    order = torch.randperm(points.shape[0], generator=generator, device="cpu").to(points.device)
    return points[order[:k]].clone()


def fake_quantize(
    values: Tensor,  # [M, D]
    ranges: Tensor,  # [D, 2] float32, on the values' device
    bits: int,
) -> Tensor:  # [M, D], forward quantised, backward identity (straight-through)
    lo = ranges[:, 0].to(values.dtype)
    # The format's step in float64 on the device, as the host's grid_steps, then rounded once to the values' dtype.
    step = grid_step(ranges[:, 1].double() - ranges[:, 0].double(), bits, where=torch.where).to(values.dtype)
    snapped = torch.round((values - lo) / step).clamp(0, 2**bits - 1) * step + lo
    return values + (snapped - values).detach()


@dataclass
class Codebook:
    """One vector-quantised attribute group: K-means once, then the entries themselves are trained."""

    centroids: Tensor  # [k, D] learnable
    assign: Tensor  # [N] fixed after clustering
    bits: int
    bounds: Tensor  # [D, 2] the range the format accepts per column

    @classmethod
    def cluster(cls, vectors: Tensor, k: int, bits: int, bounds: np.ndarray,  # vectors [N, D], bounds [D, 2]
                generator: torch.Generator) -> "Codebook":
        centroids, assign = kmeans(vectors.detach(), k, generator=generator)
        codebook = cls(centroids.requires_grad_(True), assign, bits,
                       torch.as_tensor(bounds, dtype=vectors.dtype, device=vectors.device))
        codebook.clamp_to_bounds()
        return codebook

    @property
    def ranges(self) -> Tensor:  # [D, 2] float16-representable (min, max) of the entries, on their device
        return half_range(self.centroids)

    def values(self) -> Tensor:  # [N, D] exactly what the decoder will see
        return fake_quantize(self.centroids, self.ranges, self.bits)[self.assign]

    def clamp_to_bounds(self) -> None:
        with torch.no_grad():
            self.centroids.copy_(torch.maximum(torch.minimum(self.centroids, self.bounds[:, 1]), self.bounds[:, 0]))

    def compact(self) -> tuple[np.ndarray, np.ndarray]:  # ([k', D] used centroids, [N] remapped index)
        """Drop entries no Gaussian uses, so k never exceeds N and no bits are spent on them."""
        used, remapped = np.unique(self.assign.cpu().numpy(), return_inverse=True)
        return self.centroids.detach().cpu().numpy()[used], remapped


class QuantisedModel:
    """The Gaussians as the quantised phase trains them: shapes and colours each through a codebook or per
    Gaussian on a uniform grid, positions on the format's grid; every value the render sees is exactly
    what the decoder will see."""

    def __init__(self, layout: Layout, shape_vq: Codebook | None, color_vq: Codebook | None, device: torch.device):
        self.layout, self.shape_vq, self.color_vq = layout, shape_vq, color_vq  # layout ranges: placeholders
        # On the device once: a per-step host-to-device copy would wait for the GPU.
        self._shape_bounds = torch.as_tensor(format_bounds(SHAPE_COLUMNS), device=device)
        self._color_bounds = torch.as_tensor(format_bounds(COLOR_COLUMNS), device=device)
        # Accumulated blending draws c * opacity: per-Gaussian colours code that product, opacity fixed at 1
        # (a constant column costs no payload), rather than spend symbols on a redundant factor.
        self._fold_opacity = layout.blend_mode == "sum"

    @classmethod
    def cluster(cls, gaussians: Gaussians, layout: Layout, k_shape: int, k_color: int,
                generator: torch.Generator) -> "QuantisedModel":
        """K-means of the groups not coded per Gaussian (shapes first, for the random stream)."""
        shape_vq = color_vq = None
        if not layout.shape_per_gaussian:
            shape_vq = Codebook.cluster(_shape_vectors(gaussians), k_shape, layout.shape_bits,
                                        format_bounds(SHAPE_COLUMNS), generator)
        if not layout.color_per_gaussian:
            color_vq = Codebook.cluster(_color_vectors(gaussians), k_color, layout.color_bits,
                                        format_bounds(COLOR_COLUMNS), generator)
        return cls(layout, shape_vq, color_vq, gaussians.xy.device)

    def codebooks(self) -> list[Codebook]:
        return [vq for vq in (self.color_vq, self.shape_vq) if vq is not None]

    def keep(self, index: Tensor) -> None:  # [M] the Gaussians kept, as ``density.select`` keeps them
        for vq in self.codebooks():
            vq.assign = vq.assign[index]

    def shape_values(self, gaussians: Gaussians) -> Tensor:  # [N, 3] log covariance as the decoder sees it
        if self.shape_vq is not None:
            return self.shape_vq.values()
        vectors = _shape_vectors(gaussians)
        return fake_quantize(vectors, _ranges(vectors, self._shape_bounds), self.layout.shape_bits)

    def color_values(self, gaussians: Gaussians) -> Tensor:  # [N, 4] colour and opacity as the decoder sees them
        if self.color_vq is not None:
            return self.color_vq.values()
        vectors = self._color_vectors(gaussians)
        return fake_quantize(vectors, _ranges(vectors, self._color_bounds), self.layout.color_bits)

    def coded_columns(self, gaussians: Gaussians) -> list[tuple[ValueColumns, Tensor, Tensor]]:
        """(stream, values [N, D], ranges [D, 2]) of each group coded per Gaussian: what the rate term counts
        (``codec.train.rate_model``). The values are the unquantised ones, so the count moves smoothly with them."""
        columns = []
        if self.shape_vq is None:
            vectors = _shape_vectors(gaussians)
            columns.append((SHAPE_VALUES, vectors, _ranges(vectors, self._shape_bounds)))
        if self.color_vq is None:
            vectors = self._color_vectors(gaussians)
            columns.append((COLOR_VALUES, vectors, _ranges(vectors, self._color_bounds)))
        return columns

    def render_inputs(self, gaussians: Gaussians) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        shape, color = self.shape_values(gaussians), self.color_values(gaussians)
        scales, rotation = scales_and_rotation(shape)
        return snap(self.layout.grid, gaussians.xy), scales, rotation, color[:, :3], color[:, 3]

    def to_quantized(self, gaussians: Gaussians) -> QuantizedGaussians:
        shapes, shape_index, shape_ranges = _group_values(self.shape_vq, _shape_vectors(gaussians), self._shape_bounds)
        colors, color_index, color_ranges = _group_values(self.color_vq, self._color_vectors(gaussians),
                                                          self._color_bounds)
        layout = dataclasses.replace(self.layout, shape_ranges=_as_ranges(shape_ranges),
                                     color_ranges=_as_ranges(color_ranges))
        return from_trained(layout, gaussians.xy, shapes, shape_index, colors, color_index)

    def _color_vectors(self, gaussians: Gaussians) -> Tensor:  # [N, 4] what per-Gaussian colours code
        vectors = _color_vectors(gaussians)
        if not self._fold_opacity:
            return vectors
        return torch.cat([vectors[:, :3] * vectors[:, 3:], torch.ones_like(vectors[:, 3:])], dim=1)


def _group_values(codebook: Codebook | None, vectors: Tensor,  # vectors [N, D]: the group's per-Gaussian values
                  bounds: Tensor) -> tuple[np.ndarray, np.ndarray, Tensor]:  # (values, index, [D, 2] ranges)
    """What ``from_trained`` takes for one group: the used codebook entries and indices, or every Gaussian's
    own values."""
    if codebook is not None:
        return *codebook.compact(), codebook.ranges
    return vectors.detach().cpu().numpy(), np.arange(len(vectors)), _ranges(vectors, bounds)


def _ranges(vectors: Tensor, bounds: Tensor) -> Tensor:  # [D, 2] of per-Gaussian values, within the format's bounds
    return torch.minimum(torch.maximum(half_range(vectors), bounds[:, :1]), bounds[:, 1:])


def _shape_vectors(gaussians: Gaussians) -> Tensor:  # [N, 3] log covariance
    return log_covariance(gaussians.log_scale, gaussians.rotation)


def _color_vectors(gaussians: Gaussians) -> Tensor:  # [N, 4] colour and opacity
    return torch.cat([gaussians.color, torch.sigmoid(gaussians.opacity_logit)[:, None]], dim=1)


def _as_ranges(ranges: Tensor) -> tuple[tuple[float, float], ...]:  # [D, 2] -> Layout's form (read back: the write)
    return tuple((float(low), float(high)) for low, high in ranges.cpu().numpy())


# Trained tensors onto the format's grids (the grids themselves: codec.format.values).


def grid_index(grid: PositionGrid, xy: Tensor) -> tuple[Tensor, Tensor]:  # [N, 2] pixels -> ([N], [N]) integral columns, rows
    step_x, step_y = grid.steps()
    cols = torch.round(xy[:, 0].clamp(0, grid.width) / step_x)
    rows = torch.round(xy[:, 1].clamp(0, grid.height) / step_y)
    return cols.clamp(0, grid.levels), rows.clamp(0, grid.levels)

def snap(grid: PositionGrid, xy: Tensor) -> Tensor:  # [N, 2], forward on the grid, backward identity (straight-through)
    """The positions the decoder will see, computed on the autograd path in the tensor's precision."""
    cols, rows = grid_index(grid, xy)
    step_x, step_y = grid.steps()  # Python floats, not a tensor: a host-to-device copy would wait for the GPU
    snapped = torch.stack([cols * step_x, rows * step_y], 1)
    return xy + (snapped - xy).detach()


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


def log_covariance(
    log_scale: Tensor,  # [N, 2]
    rotation: Tensor,  # [N]
) -> Tensor:  # [N, 3] (xx, xy, yy) of log S = R diag(2 log s) R^T
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    l1, l2 = 2 * log_scale[:, 0], 2 * log_scale[:, 1]
    return torch.stack([cos * cos * l1 + sin * sin * l2, cos * sin * (l1 - l2), sin * sin * l1 + cos * cos * l2], 1)


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
    cols, rows = grid_index(layout.grid, xy)
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
