"""The quantised form: what a .gsi file holds, as integers plus float16 column ranges, and its uniform grids
(paper eq. 7-8). Trained tensors come onto these grids in ``codec.train.quantise``; the decoder turns them into
render inputs in ``codec.decode.dequantise``.

Shapes are stored as the matrix logarithm of the covariance, log S = R diag(2 log s) R^T: unique and
continuous (no half-turn or axis-swap ambiguity), so K-means distances between shapes are meaningful.
Plain numpy: nothing here trains or renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:  # [N], [N] int -> [N, 2] float64 pixels
        step_x, step_y = self.steps()
        return np.stack([x * step_x, y * step_y], 1)


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


def grid_steps(ranges: np.ndarray, bits: int) -> np.ndarray:  # [D, 2] -> [D] float64 step per column
    return grid_step(ranges[:, 1].astype(np.float64) - ranges[:, 0].astype(np.float64), bits)


def grid_step(span, bits: int, *, floor: float = 0.0, where=np.where):  # [D] span -> [D] step, span's type
    """The one step of the uniform grids (paper eq. 7): span / (2^bits - 1), never finer than floor / (2^bits
    - 1); a column of no span has step 1 / (2^bits - 1), all its values its minimum. ``span`` is a numpy
    array, or a torch tensor with ``where=torch.where`` (the train side's, on the device)."""
    return where(span > 0, span.clip(min=floor), 1.0) / (2**bits - 1)
