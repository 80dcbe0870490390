"""Tile binning for the Triton renderer: which Gaussians may touch each 16 x 16 pixel tile, in index order.

Two Triton kernels and one sort, all on the tensors' device. The pair buffers are sized either by
reading the total number of (tile, Gaussian) pairs back (a host round trip per call) or, given a
``pair_bound.PairBound``, from its capacity with no round trip (the encoder's per-step path).

1. ``_tile_rects_kernel`` (one lane per Gaussian): the rectangle of tiles holding the pixel box of the
   Gaussian's 3-sigma ellipse, and its tile count. The box is computed in float64 exactly as
   ``geometry.pixel_boxes`` does, widened by a hair so that it can only be a superset of the
   reference's box; the renderer decides pixel by pixel with the exact cut-off test, so a spare tile
   costs a little time and never changes a result.
2. ``torch.cumsum`` of the counts gives each Gaussian's first slot in the pair list.
3. ``_emit_pairs_kernel`` (a block of Gaussians per program, their tiles in vector chunks) writes one
   (tile id, Gaussian id) pair per slot below the capacity. Pairs come out in Gaussian order; unused
   slots keep the tile id ``n_tiles``, past every real tile.
4. A stable sort by tile id keeps Gaussian order within each tile, which is the blending order (the
   unused slots sort last); a ``searchsorted`` of the sorted ids gives each tile's range.

``bin_gaussians_reference`` is the same function in plain torch, for the tests.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from kernels.pair_bound import PairBound
from kernels.geometry import CUTOFF_MAHALANOBIS_SQ, pixel_boxes

TILE = 16  # tile side in pixels; one renderer program per tile, TILE * TILE pixels as one block
BLOCK_N = 128  # Gaussians per program in the per-Gaussian kernels
BLOCK_K = 16  # tiles written per Gaussian and loop step in _emit_pairs_kernel
BOX_SLACK = 1e-9  # widening of the float64 box (relative, plus as many pixels): a superset of the reference's


class TileBins(NamedTuple):
    ranges: Tensor  # [tiles_y * tiles_x + 1] int32: tile t holds gids[ranges[t]:ranges[t + 1]]
    gids: Tensor  # [capacity] int32 Gaussian ids, grouped by tile (row-major), index order within a tile
    tiles_x: int
    tiles_y: int


def tile_grid(height: int, width: int) -> tuple[int, int]:
    """(tiles_x, tiles_y) covering an image of height x width pixels."""
    return triton.cdiv(width, TILE), triton.cdiv(height, TILE)


@triton.jit
def _tile_rects_kernel(
    means_ptr, scales_ptr, rot_ptr,  # [N, 2], [N, 2], [N] float32
    rects_ptr,  # [N, 4] int32 out: tile x0, y0, x1, y1 inclusive
    counts_ptr,  # [N] int32 out: number of tiles in the rectangle, 0 when the box is empty
    n, height, width,
    stride_mn, stride_sn, stride_rn,
    K_SIGMA: tl.constexpr, SLACK: tl.constexpr, TILE: tl.constexpr, BLOCK_N: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < n
    mx = tl.load(means_ptr + offs * stride_mn, mask=m, other=0.0).to(tl.float64)
    my = tl.load(means_ptr + offs * stride_mn + 1, mask=m, other=0.0).to(tl.float64)
    s1 = tl.load(scales_ptr + offs * stride_sn, mask=m, other=1.0).to(tl.float64)
    s2 = tl.load(scales_ptr + offs * stride_sn + 1, mask=m, other=1.0).to(tl.float64)
    th = tl.load(rot_ptr + offs * stride_rn, mask=m, other=0.0).to(tl.float64)
    # Same formulas as geometry.extents / pixel_boxes, in float64.
    cos, sin = tl.cos(th), tl.sin(th)
    var1, var2 = s1 * s1, s2 * s2
    ex = K_SIGMA * tl.sqrt(cos * cos * var1 + sin * sin * var2)
    ey = K_SIGMA * tl.sqrt(sin * sin * var1 + cos * cos * var2)
    # Widen by SLACK * (1 + extent): a float constant is a float32 in Triton, so 1 + SLACK would be 1.
    ex += SLACK * (1.0 + ex)
    ey += SLACK * (1.0 + ey)
    x0 = tl.ceil(mx - ex - 0.5)
    x1 = tl.floor(mx + ex - 0.5)
    y0 = tl.ceil(my - ey - 0.5)
    y1 = tl.floor(my + ey - 0.5)
    # Written so that NaN anywhere makes the box empty (every comparison with NaN is False).
    hit = (x1 >= x0) & (y1 >= y0) & (x1 >= 0.0) & (y1 >= 0.0) & (x0 <= width - 1.0) & (y0 <= height - 1.0)
    hit = hit & m
    # Clamp before the integer conversion: an infinite box must not reach the cast.
    x0 = tl.where(hit, tl.maximum(x0, 0.0), 0.0).to(tl.int32)
    y0 = tl.where(hit, tl.maximum(y0, 0.0), 0.0).to(tl.int32)
    x1 = tl.where(hit, tl.minimum(x1, width - 1.0), 0.0).to(tl.int32)
    y1 = tl.where(hit, tl.minimum(y1, height - 1.0), 0.0).to(tl.int32)
    tx0, ty0, tx1, ty1 = x0 // TILE, y0 // TILE, x1 // TILE, y1 // TILE
    count = tl.where(hit, (tx1 - tx0 + 1) * (ty1 - ty0 + 1), 0)
    tl.store(rects_ptr + offs * 4 + 0, tx0, mask=m)
    tl.store(rects_ptr + offs * 4 + 1, ty0, mask=m)
    tl.store(rects_ptr + offs * 4 + 2, tx1, mask=m)
    tl.store(rects_ptr + offs * 4 + 3, ty1, mask=m)
    tl.store(counts_ptr + offs, count, mask=m)


@triton.jit
def _emit_pairs_kernel(
    rects_ptr,  # [N, 4] int32 tile rectangles
    counts_ptr,  # [N] int32 tiles per Gaussian
    ends_ptr,  # [N] int32 inclusive cumulative sum of counts: Gaussian i owns slots [end - count, end)
    keys_ptr,  # [capacity] int32 out: tile id ty * tiles_x + tx
    gids_ptr,  # [capacity] int32 out: Gaussian id
    n, tiles_x, capacity,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    gid = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = gid < n
    count = tl.load(counts_ptr + gid, mask=m, other=0)
    first = tl.load(ends_ptr + gid, mask=m, other=0) - count
    tx0 = tl.load(rects_ptr + gid * 4 + 0, mask=m, other=0)
    ty0 = tl.load(rects_ptr + gid * 4 + 1, mask=m, other=0)
    tw = tl.maximum(tl.load(rects_ptr + gid * 4 + 2, mask=m, other=0) - tx0 + 1, 1)
    # Every Gaussian of the block steps through its rectangle together, BLOCK_K tiles at a time;
    # the largest rectangle of the block sets the number of steps.
    for k0 in range(0, tl.max(count, axis=0), BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)  # [BLOCK_K]
        slot = first[:, None] + k[None, :]
        km = (k[None, :] < count[:, None]) & (slot < capacity)  # [BLOCK_N, BLOCK_K]
        tx = tx0[:, None] + k[None, :] % tw[:, None]
        ty = ty0[:, None] + k[None, :] // tw[:, None]
        tl.store(keys_ptr + slot, ty * tiles_x + tx, mask=km)
        tl.store(gids_ptr + slot, tl.broadcast_to(gid[:, None], (BLOCK_N, BLOCK_K)), mask=km)


def bin_gaussians(
    means: Tensor,  # [N, 2] float32
    scales: Tensor,  # [N, 2] float32
    rotations: Tensor,  # [N] float32
    height: int,
    width: int,
    bound: PairBound | None = None,  # sizes the pair buffers without a read back; None: read the count
) -> TileBins:
    """Per-tile lists of the Gaussians whose 3-sigma box meets the tile, in index order."""
    device, n = means.device, means.shape[0]
    tiles_x, tiles_y = tile_grid(height, width)
    n_tiles = tiles_x * tiles_y
    if n == 0:
        return TileBins(torch.zeros(n_tiles + 1, dtype=torch.int32, device=device),
                        torch.zeros(0, dtype=torch.int32, device=device), tiles_x, tiles_y)
    rects = torch.empty(n, 4, dtype=torch.int32, device=device)
    counts = torch.empty(n, dtype=torch.int32, device=device)
    grid = (triton.cdiv(n, BLOCK_N),)
    _tile_rects_kernel[grid](
        means, scales, rotations, rects, counts, n, height, width,
        means.stride(0), scales.stride(0), rotations.stride(0),
        K_SIGMA=CUTOFF_MAHALANOBIS_SQ**0.5, SLACK=BOX_SLACK, TILE=TILE, BLOCK_N=BLOCK_N,
    )
    ends = torch.cumsum(counts, 0, dtype=torch.int32)
    capacity = int(ends[-1]) if bound is None else bound.size(ends[-1])  # without a bound: a host round trip
    keys = torch.full((capacity,), n_tiles, dtype=torch.int32, device=device)
    gids = torch.zeros(capacity, dtype=torch.int32, device=device)
    if capacity > 0:
        _emit_pairs_kernel[grid](rects, counts, ends, keys, gids, n, tiles_x, capacity,
                                 BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    # Stable: pairs were written in Gaussian order, so each tile's list stays in blending order.
    keys, order = torch.sort(keys, stable=True)
    gids = gids[order]
    bounds = torch.arange(n_tiles + 1, dtype=torch.int32, device=device)
    ranges = torch.searchsorted(keys, bounds, out_int32=True)
    return TileBins(ranges, gids, tiles_x, tiles_y)


def bin_gaussians_reference(
    means: Tensor,  # [N, 2]
    scales: Tensor,  # [N, 2]
    rotations: Tensor,  # [N]
    height: int,
    width: int,
) -> TileBins:
    """``bin_gaussians`` in plain torch from ``geometry.pixel_boxes`` (without the hair of slack)."""
    tiles_x, tiles_y = tile_grid(height, width)
    boxes = pixel_boxes(means, scales, rotations, height, width)
    hit = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1]) & (boxes[:, :2] >= 0).all(1)
    tile_boxes = torch.where(hit[:, None], boxes.div(TILE, rounding_mode="floor"), 0)
    tw = tile_boxes[:, 2] - tile_boxes[:, 0] + 1
    counts = torch.where(hit, tw * (tile_boxes[:, 3] - tile_boxes[:, 1] + 1), 0)
    gid = torch.repeat_interleave(torch.arange(len(counts), device=means.device), counts)
    local = torch.arange(len(gid), device=means.device) - (torch.cumsum(counts, 0) - counts)[gid]
    tile = (tile_boxes[gid, 1] + local // tw[gid]) * tiles_x + tile_boxes[gid, 0] + local % tw[gid]
    tile, order = torch.sort(tile, stable=True)
    ranges = torch.searchsorted(tile, torch.arange(tiles_x * tiles_y + 1, device=means.device))
    return TileBins(ranges.int(), gid[order].int(), tiles_x, tiles_y)
