"""The numba tile renderer on numpy arrays: the same function as ``kernels.reference.render_reference``.

Gaussians are binned to 64x16 tiles by their 3-sigma pixel box (``geometry.pixel_boxes``), keeping
index order inside each tile. Tiles are grouped into a fixed number of chunks of about equal work; the
chunks run in parallel (``prange``), the tiles of one chunk one after another. Inside a tile the loop is
Gaussian-major: on each row of the tile a Gaussian visits only the span its ellipse can reach (about half
of its box), evaluating exp once per row and stepping it by products along the row, and per-pixel state
(transmittance, colour) lives in small tile buffers, so every pixel still sees its Gaussians in index
order. Together these cut the time of a box walk with one exp per pixel by about 40%.

Precision: everything per pixel is float64. The cut-off test must be float64 anyway, with the very
same formula as the reference, or pixels on the 3-sigma boundary would differ by ~1% of a colour; and
in scalar (non-vectorised) loops float64 costs about what float32 does.

Backward: rather than 3DGS's back-to-front walk, which recovers T_i = T_{i+1} / (1 - a_i) from the
final transmittance and breaks once that underflows (a few hundred stacked opaque Gaussians), it
replays each pixel front to back, recomputing T_i exactly, and gets the light behind Gaussian i as
(pixel total) - (prefix up to i), using the float64 image the forward pass saved. Gradients go to a
buffer per chunk, summed in chunk order: race-free and deterministic.

``render_numpy`` is the forward render alone (a decode); ``kernels.cpu`` wraps ``prepare``, ``forward`` and
``backward`` as a differentiable torch function. This module imports no torch, so a decode never loads it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from kernels.geometry import ALPHA_MAX, CUTOFF_MAHALANOBIS_SQ, MODES, conics, float64, pixel_boxes

# Wide tiles: a Gaussian's row costs a span solve and two exps per tile it crosses, so fewer, wider tiles
# per row pay.
TILE_W, TILE_H = 64, 16
CHUNKS = 16  # fixed, so gradient summation order does not depend on the thread count


@njit(cache=True)
def _bin(
    boxes,  # [N, 4] int64 inclusive pixel boxes x0, y0, x1, y1, already clipped to the image
    tiles_x: int,
    tiles_y: int,
):  # ([T + 1] start of each tile's list, [P] Gaussian ids in index order per tile, [T] work per tile)
    n_tiles = tiles_x * tiles_y
    count = np.zeros(n_tiles, np.int64)
    work = np.full(n_tiles, float(TILE_W * TILE_H))  # each tile costs at least its initialisation
    for g in range(boxes.shape[0]):
        x0, y0, x1, y1 = boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3]
        if x1 < x0 or y1 < y0:
            continue
        for ty in range(y0 // TILE_H, y1 // TILE_H + 1):
            h = min(y1, ty * TILE_H + TILE_H - 1) - max(y0, ty * TILE_H) + 1
            for tx in range(x0 // TILE_W, x1 // TILE_W + 1):
                w = min(x1, tx * TILE_W + TILE_W - 1) - max(x0, tx * TILE_W) + 1
                count[ty * tiles_x + tx] += 1
                work[ty * tiles_x + tx] += w * h
    start = np.zeros(n_tiles + 1, np.int64)
    start[1:] = np.cumsum(count)
    ids = np.empty(start[-1], np.int64)
    fill = start[:-1].copy()
    for g in range(boxes.shape[0]):  # Gaussians in index order, so each tile's list is in index order
        x0, y0, x1, y1 = boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3]
        if x1 < x0 or y1 < y0:
            continue
        for ty in range(y0 // TILE_H, y1 // TILE_H + 1):
            for tx in range(x0 // TILE_W, x1 // TILE_W + 1):
                t = ty * tiles_x + tx
                ids[fill[t]] = g
                fill[t] += 1
    return start, ids, work


@njit(inline="always")
def _row_span(a, b, c, dy, mx):  # (x0, x1) inclusive, a superset of the row's pixels inside the cut-off
    # On the row, maha(dx) = a dx^2 + 2 b dy dx + c dy^2 is a parabola with its lowest value at
    # dx = -b dy / a; solving maha = cutoff gives the span, widened by a pixel for rounding.
    lowest = dy * dy * (c - b * b / a)
    if lowest > CUTOFF_MAHALANOBIS_SQ * (1.0 + 1e-9):
        return 1, 0
    half = math.sqrt(max(CUTOFF_MAHALANOBIS_SQ - lowest, 0.0) / a)
    centre = mx - 0.5 - b * dy / a
    return int(math.floor(centre - half)) - 1, int(math.ceil(centre + half)) + 1


@njit(inline="always")
def _next_gauss(follows, gauss, step, ratio, maha, a, b, dx, dy):  # (exp(-maha / 2), its factor to x + 1)
    # Along a row exp(-maha/2) changes by step = exp(-(a (2 dx + 1) + 2 b dy) / 2) per pixel and step by
    # ratio = exp(-a): two products replace an exp. Restarted from exp at each row's first pixel, the
    # drift stays below 1e-13, and the cut-off test above still uses maha itself.
    if follows:
        return gauss * step, step * ratio
    return math.exp(-0.5 * maha), math.exp(-0.5 * (a * (2.0 * dx + 1.0) + 2.0 * b * dy))


@njit(parallel=True, cache=True)
def _forward(
    means,  # [N, 2] float64
    conic,  # [N, 3] float64 (a, b, c) of S^-1
    colors,  # [N, 3] float64
    opac,  # [N] float64
    boxes,  # [N, 4] int64, clipped
    start,  # [T + 1] int64
    ids,  # [P] int64
    chunks,  # [C + 1] int64 first tile of each chunk
    img,  # [H, W, 3] out: float64, or float32 when no gradient follows (pixels are summed in float64 anyway)
    alpha_mode: bool,
):  # img
    height, width = img.shape[0], img.shape[1]
    tiles_x = (width + TILE_W - 1) // TILE_W
    for ch in prange(chunks.shape[0] - 1):
        trans = np.empty((TILE_H, TILE_W))
        acc = np.empty((TILE_H, TILE_W, 3))
        for t in range(chunks[ch], chunks[ch + 1]):
            ty0, tx0 = (t // tiles_x) * TILE_H, (t % tiles_x) * TILE_W
            trans[:] = 1.0
            acc[:] = 0.0
            for k in range(start[t], start[t + 1]):
                g = ids[k]
                mx, my, o = means[g, 0], means[g, 1], opac[g]
                a, b, c = conic[g, 0], conic[g, 1], conic[g, 2]
                cr, cg, cb = colors[g, 0], colors[g, 1], colors[g, 2]
                ratio = math.exp(-a)
                x_lo, x_hi = max(boxes[g, 0], tx0), min(boxes[g, 2], tx0 + TILE_W - 1)
                for y in range(max(boxes[g, 1], ty0), min(boxes[g, 3], ty0 + TILE_H - 1) + 1):
                    dy = y + 0.5 - my
                    x0, x1 = _row_span(a, b, c, dy, mx)
                    last = -2  # the last x inside the cut-off; gauss and step belong to it
                    gauss = step = 0.0
                    for x in range(max(x0, x_lo), min(x1, x_hi) + 1):
                        dx = x + 0.5 - mx
                        # Same expression and evaluation order as reference.pixel_pairs: identical cut-off.
                        maha = a * dx * dx + 2.0 * b * dx * dy + c * dy * dy
                        if not maha <= CUTOFF_MAHALANOBIS_SQ:  # also drops NaN
                            continue
                        gauss, step = _next_gauss(x == last + 1, gauss, step, ratio, maha, a, b, dx, dy)
                        last = x
                        alpha = min(o * gauss, ALPHA_MAX)
                        ly, lx = y - ty0, x - tx0
                        weight = alpha
                        if alpha_mode:
                            weight *= trans[ly, lx]
                            trans[ly, lx] *= 1.0 - alpha
                        acc[ly, lx, 0] += weight * cr
                        acc[ly, lx, 1] += weight * cg
                        acc[ly, lx, 2] += weight * cb
            for ly in range(min(TILE_H, height - ty0)):
                for lx in range(min(TILE_W, width - tx0)):
                    for ch3 in range(3):
                        img[ty0 + ly, tx0 + lx, ch3] = acc[ly, lx, ch3]
    return img


@njit(parallel=True, cache=True)
def _backward(
    means,  # [N, 2] float64
    conic,  # [N, 3] float64
    colors,  # [N, 3] float64
    opac,  # [N] float64
    boxes,  # [N, 4] int64, clipped
    start,  # [T + 1] int64
    ids,  # [P] int64
    chunks,  # [C + 1] int64
    img,  # [H, W, 3] float64, the forward's output
    grad_img,  # [H, W, 3] float64, dL/dimg
    alpha_mode: bool,
):  # [C, N, 9] float64 per chunk: dL/d (mx, my, a, b, c, r, g, b, opacity)
    height, width = img.shape[0], img.shape[1]
    tiles_x = (width + TILE_W - 1) // TILE_W
    n_chunks = chunks.shape[0] - 1
    grads = np.zeros((n_chunks, means.shape[0], 9))
    for ch in prange(n_chunks):
        trans = np.empty((TILE_H, TILE_W))
        prefix = np.empty((TILE_H, TILE_W))  # sum over Gaussians so far of (dL/dimg . c_j) * weight_j
        total = np.zeros((TILE_H, TILE_W))  # dL/dimg . img, the same sum over all Gaussians
        for t in range(chunks[ch], chunks[ch + 1]):
            ty0, tx0 = (t // tiles_x) * TILE_H, (t % tiles_x) * TILE_W
            trans[:] = 1.0
            prefix[:] = 0.0
            if alpha_mode:  # only ordered blending needs the light behind each Gaussian
                for ly in range(min(TILE_H, height - ty0)):
                    for lx in range(min(TILE_W, width - tx0)):
                        s = 0.0
                        for ch3 in range(3):
                            s += grad_img[ty0 + ly, tx0 + lx, ch3] * img[ty0 + ly, tx0 + lx, ch3]
                        total[ly, lx] = s
            for k in range(start[t], start[t + 1]):
                g = ids[k]
                mx, my, o = means[g, 0], means[g, 1], opac[g]
                a, b, c = conic[g, 0], conic[g, 1], conic[g, 2]
                # This Gaussian's gradient over its pixels in this tile, in registers.
                g_mx = g_my = g_a = g_b = g_c = g_r = g_g = g_bl = g_o = 0.0
                cr, cg, cb = colors[g, 0], colors[g, 1], colors[g, 2]
                ratio = math.exp(-a)
                x_lo, x_hi = max(boxes[g, 0], tx0), min(boxes[g, 2], tx0 + TILE_W - 1)
                for y in range(max(boxes[g, 1], ty0), min(boxes[g, 3], ty0 + TILE_H - 1) + 1):
                    dy = y + 0.5 - my
                    x0, x1 = _row_span(a, b, c, dy, mx)
                    last = -2
                    gauss = step = 0.0
                    for x in range(max(x0, x_lo), min(x1, x_hi) + 1):
                        dx = x + 0.5 - mx
                        maha = a * dx * dx + 2.0 * b * dx * dy + c * dy * dy
                        if not maha <= CUTOFF_MAHALANOBIS_SQ:
                            continue
                        gauss, step = _next_gauss(x == last + 1, gauss, step, ratio, maha, a, b, dx, dy)
                        last = x
                        raw = o * gauss
                        alpha = min(raw, ALPHA_MAX)
                        ly, lx = y - ty0, x - tx0
                        gr, gg, gb = grad_img[y, x, 0], grad_img[y, x, 1], grad_img[y, x, 2]
                        dot = gr * cr + gg * cg + gb * cb
                        if alpha_mode:
                            tr = trans[ly, lx]
                            weight = alpha * tr
                            prefix[ly, lx] += dot * weight
                            # dC/da_i = c_i T_i - (light from Gaussians behind i) / (1 - a_i)
                            d_alpha = dot * tr - (total[ly, lx] - prefix[ly, lx]) / (1.0 - alpha)
                            trans[ly, lx] = tr * (1.0 - alpha)
                        else:
                            weight = alpha
                            d_alpha = dot
                        g_r += gr * weight
                        g_g += gg * weight
                        g_bl += gb * weight
                        if raw > ALPHA_MAX:  # clamped: alpha is constant in the parameters
                            continue
                        g_o += d_alpha * gauss
                        d_maha = -0.5 * d_alpha * raw
                        g_mx -= d_maha * (2.0 * a * dx + 2.0 * b * dy)
                        g_my -= d_maha * (2.0 * b * dx + 2.0 * c * dy)
                        g_a += d_maha * dx * dx
                        g_b += d_maha * 2.0 * dx * dy
                        g_c += d_maha * dy * dy
                out = grads[ch, g]
                out[0] += g_mx
                out[1] += g_my
                out[2] += g_a
                out[3] += g_b
                out[4] += g_c
                out[5] += g_r
                out[6] += g_g
                out[7] += g_bl
                out[8] += g_o
    return grads


class TilePlan(NamedTuple):
    boxes: np.ndarray  # [N, 4] int64 inclusive pixel boxes, clipped to the image
    start: np.ndarray  # [T + 1] int64 start of each tile's list in ids
    ids: np.ndarray  # [P] int64 Gaussian ids, in index order per tile
    chunks: np.ndarray  # [C + 1] int64 first tile of each chunk


def prepare(
    means,  # [N, 2] numpy array or CPU tensor without gradient
    scales,  # [N, 2]
    rotations,  # [N]
    height: int,
    width: int,
) -> tuple[np.ndarray, TilePlan]:  # ([N, 3] float64 conics (a, b, c), the tile plan)
    """What forward and backward share: each Gaussian's conic, and which tiles it reaches in which chunk."""
    conic = np.stack([np.asarray(v) for v in conics(float64(scales), float64(rotations))], 1)
    boxes = np.asarray(pixel_boxes(means, scales, rotations, height, width))
    boxes[:, 0:2] = np.maximum(boxes[:, 0:2], 0)  # NaN parameters give -1 boxes; clipped, they are empty
    boxes[:, 2] = np.minimum(boxes[:, 2], width - 1)
    boxes[:, 3] = np.minimum(boxes[:, 3], height - 1)
    boxes = np.ascontiguousarray(boxes)
    tiles_x, tiles_y = -(-width // TILE_W), -(-height // TILE_H)
    start, ids, work = _bin(boxes, tiles_x, tiles_y)
    # Contiguous runs of tiles with about equal work; a pure function of the inputs, so deterministic.
    n_chunks = min(CHUNKS, tiles_x * tiles_y)
    cum = np.cumsum(work)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_chunks) / n_chunks)
    chunks = np.concatenate([[0], cuts, [len(work)]]).astype(np.int64)
    return conic, TilePlan(boxes, start, ids, chunks)


def forward(
    means: np.ndarray,  # [N, 2]
    conic: np.ndarray,  # [N, 3] float64, from prepare
    colors: np.ndarray,  # [N, 3]
    opacities: np.ndarray,  # [N]
    plan: TilePlan,
    out: np.ndarray,  # [H, W, 3] zeros, float64 or float32
    mode: str,
) -> np.ndarray:  # out, rendered
    return _forward(_f64(means), conic, _f64(colors), _f64(opacities), *plan, out, mode == "alpha")


def backward(
    means: np.ndarray,  # [N, 2]
    conic: np.ndarray,  # [N, 3] float64
    colors: np.ndarray,  # [N, 3]
    opacities: np.ndarray,  # [N]
    plan: TilePlan,
    img: np.ndarray,  # [H, W, 3] float64, forward's output
    grad_img: np.ndarray,  # [H, W, 3] dL/dimg
    mode: str,
) -> np.ndarray:  # [N, 9] float64 dL/d (mx, my, a, b, c, r, g, b, opacity)
    per_chunk = _backward(_f64(means), conic, _f64(colors), _f64(opacities), *plan, img, _f64(grad_img),
                          mode == "alpha")
    return per_chunk.sum(axis=0)  # chunks summed in a fixed order


def render_numpy(
    means: np.ndarray,  # [N, 2] (x, y) in pixels
    scales: np.ndarray,  # [N, 2] standard deviations, pixels, > 0
    rotations: np.ndarray,  # [N] radians
    colors: np.ndarray,  # [N, 3]
    opacities: np.ndarray,  # [N] in [0, 1]
    height: int,
    width: int,
    mode: str = "alpha",
) -> np.ndarray:  # [H, W, 3] float32
    """The forward render of a decode: float32 pixels, each summed in float64."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    conic, plan = prepare(means, scales, rotations, height, width)
    return forward(means, conic, colors, opacities, plan, np.zeros((height, width, 3), np.float32), mode)


def _f64(array: np.ndarray) -> np.ndarray:  # contiguous float64: the one layout the compiled kernels take
    return np.ascontiguousarray(array, dtype=np.float64)
