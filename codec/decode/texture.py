"""The texture layer's decode side: latent grids sampled at the output's pixels, then a small synthesis network.

A file with a texture layer (format version 5 on) decodes to the Gaussians' render plus a residual. The residual
comes from L latent grids, level l holding ceil(H / 2^l) x ceil(W / 2^l) values whose cell centres sit at
(i + 0.5) 2^l - 0.5 picture pixels; each grid is sampled bilinearly (edges clamped) at an output pixel's
centre, and the pixel's L samples pass through a per-pixel network (L -> hidden -> hidden -> 3, ReLU between).
The trainer (``codec.train.texture``) runs the same network (``synthesise``) on torch tensors, and samples the
grids with torch's bilinear upsampling, which places them where ``Taps`` does (a test holds the two equal). The latents are integers and the network's weights integers times a power of
two, so what the entropy coder depends on is exact; the residual itself is float32, deterministic on a CPU.

A view (any size, any region) samples the grids at its own pixel centres; a view that shrinks the picture
synthesises the residual on the picture's own pixels inside the box and area-averages it down (the residual
is added, so averaging it is what an area downsample of the full decode gives), as the Gaussians' view does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from codec.format.texture import Texture


ROWS_PER_CHUNK = 64  # output rows synthesised at once: bounds the decode's float buffers on large pictures


@dataclass(frozen=True)
class Taps:
    """Bilinear taps along one axis: each output coordinate's two grid indices and the second one's weight."""

    low: np.ndarray  # [M] int64
    high: np.ndarray  # [M] int64
    weight: np.ndarray  # [M] float32

    @staticmethod
    def at(coords: np.ndarray, level: int, size: int) -> "Taps":  # coords [M] float64 picture pixels
        u = np.clip((coords + 0.5) / (1 << level) - 0.5, 0, size - 1)
        low = np.floor(u).astype(np.int64)
        return Taps(low, np.minimum(low + 1, size - 1), (u - low).astype(np.float32))


def sample(grid, rows: Taps, cols: Taps):  # grid [h, w] -> [M_rows, M_cols]
    """Bilinear samples of one latent grid."""
    top, bottom = grid[rows.low], grid[rows.high]
    lines = top + (bottom - top) * rows.weight[:, None]  # [M_rows, w]
    left, right = lines[:, cols.low], lines[:, cols.high]
    return left + (right - left) * cols.weight[None, :]


def synthesise(features, layers):  # features [L, P], layers [(W^T [out, in], b [out])] -> [3, P]
    """The per-pixel network (numpy, or torch tensors), channels first: each layer one matrix product."""
    hidden = features
    for index, (weight, bias) in enumerate(layers):
        last = index == len(layers) - 1
        if isinstance(hidden, np.ndarray):  # in place: no second buffer per layer
            hidden = weight @ hidden
            hidden += bias[:, None]
            if not last:
                np.maximum(hidden, 0, out=hidden)
        else:
            hidden = weight @ hidden + bias[:, None]
            hidden = hidden if last else hidden.relu()
    return hidden


def residual(texture: Texture, view) -> np.ndarray:  # [view.height, view.width, 3] float32
    """The texture's residual over a ``codec.decode.view.View`` of the picture."""
    if not _shrinks(view):
        return _synthesise_at(texture, _centres(view.top, view.bottom, view.height),
                              _centres(view.left, view.right, view.width))
    # Shrinking: the picture's own pixels under the box, averaged down by area.
    rows, cols = _native_pixels(view)
    top, left = rows[0], cols[0]
    native = _synthesise_at(texture, rows.astype(np.float64), cols.astype(np.float64))
    native = _area_average(native, view.top - top, view.bottom - top, view.height, axis=0)
    return _area_average(native, view.left - left, view.right - left, view.width, axis=1).astype(np.float32)


def synthesised_pixels(view) -> int:
    """The pixels ``residual`` runs the network on for this view (for the decoder's work bound)."""
    if not _shrinks(view):
        return view.pixels
    rows, cols = _native_pixels(view)
    return len(rows) * len(cols)


def _native_pixels(view) -> tuple[np.ndarray, np.ndarray]:  # the picture's rows and columns under the box
    return (np.arange(math.floor(view.top), math.ceil(view.bottom)),
            np.arange(math.floor(view.left), math.ceil(view.right)))


def _shrinks(view) -> bool:
    return view.width < view.right - view.left or view.height < view.bottom - view.top


def _centres(start: float, end: float, count: int) -> np.ndarray:  # [count] output pixel centres, picture pixels
    return start + (np.arange(count) + 0.5) * ((end - start) / count) - 0.5


def _area_average(values: np.ndarray, start: float, end: float, count: int, axis: int) -> np.ndarray:
    """``count`` equal cells over [start, end) of ``values``' pixels along ``axis``, each the mean of what it
    covers: differences of the running integral, so memory stays that of ``values``."""
    values = np.moveaxis(values, axis, 0).astype(np.float64)
    integral = np.concatenate([np.zeros_like(values[:1]), np.cumsum(values, axis=0)])  # [n + 1, ...]
    edges = np.clip(start + np.arange(count + 1) * ((end - start) / count), 0, len(values))
    whole = np.minimum(np.floor(edges).astype(np.int64), len(values) - 1)
    at_edges = integral[whole] + (edges - whole).reshape(-1, *[1] * (values.ndim - 1)) * values[whole]
    return np.moveaxis(np.diff(at_edges, axis=0) / ((end - start) / count), 0, axis)


@threadpool_limits.wrap(limits=1, user_api="blas")
def _synthesise_at(texture: Texture, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:  # [R, C, 3] float32
    """The residual at these pixel coordinates. BLAS on one thread: its products are too small to share, and
    its spinning threads slow a decode down severalfold when an encode holds the other cores."""
    layers = texture.layers()
    grids = [latent.astype(np.float32) for latent in texture.latents]
    col_taps = [Taps.at(cols, level, grid.shape[1]) for level, grid in enumerate(grids)]
    out = np.empty((len(rows), len(cols), 3), np.float32)
    for start in range(0, len(rows), ROWS_PER_CHUNK):
        chunk = rows[start: start + ROWS_PER_CHUNK]
        features = np.stack([sample(grid, Taps.at(chunk, level, grid.shape[0]), col_taps[level])
                             for level, grid in enumerate(grids)])  # [L, r, C]
        out[start: start + len(chunk)] = synthesise(features.reshape(len(grids), -1), layers).T.reshape(
            len(chunk), len(cols), 3)
    return out
