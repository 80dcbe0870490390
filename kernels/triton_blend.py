"""Triton tile renderer: the function of ``reference.render_reference``, forward and backward, on the GPU.

Pipeline of ``render_triton`` (all on the tensors' device, float32 unless said otherwise):

1. ``binning.bin_gaussians``: per 16 x 16 tile, the Gaussians whose 3-sigma box meets it, in index order.
2. ``_prepare_kernel``: one row of parameters per Gaussian (mean, conic, opacity, colour) and the conic
   in float64 for the cut-off test.
3. ``_blend_forward_kernel``: one program per tile, its 256 pixels as one block. The tile's list is
   visited front to back in chunks of BLOCK_G Gaussians loaded as vectors; a [256, BLOCK_G] block of
   alphas is blended with a ``tl.cumprod`` of (1 - alpha) along the chunk, which gives every pixel its
   transmittance in front of every Gaussian of the chunk at once. Saves, per pixel, the final
   transmittance and the list position of the last Gaussian that contributed ("alpha" mode).
4. ``_blend_backward_kernel``: one program per tile again, walking the list back to front in chunks
   from the tile's last contribution. Transmittance in front of each Gaussian is recovered from the
   saved final value (divided by the chunk's products of (1 - alpha)), the colour behind each Gaussian
   from a ``tl.cumsum``; per-Gaussian gradients are summed over the tile's pixels with ``tl.sum`` and
   added to an [N, 9] buffer with one atomic per Gaussian, parameter and tile.
5. ``_conic_grad_kernel``: chain rule from the conic (a, b, c) to scales and rotation.

Where results may differ from the reference, and why:

* Which pixels a Gaussian reaches is decided exactly as the reference does it: Mahalanobis distance in
  float64 from the float64 conic of the float32 parameters, compared with CUTOFF_MAHALANOBIS_SQ. Only
  a distance within about 1e-16 relative of the cut-off can fall the other way (the GPU may fuse a
  multiply-add the reference rounds twice), and then that one pixel differs by about 0.011 * opacity.
* alpha = min(opacity * exp(-maha / 2), ALPHA_MAX) is evaluated in float32 from the float64 distance
  rounded once (the float32 reference rounds the conic and the distance several times), and on a GPU
  Triton's float32 ``exp`` and ``/`` are hardware approximations good to a couple of ulp (the
  interpreter rounds correctly): last-bit differences in alpha and in everything after it.
* Transmittance is a float32 running product of (1 - alpha), not the reference's float64 sum of logs:
  relative error grows like (number of layers) * 6e-8.
* Early stop ("alpha" mode only): a pixel takes no more contributions once its transmittance is below
  TRANSMITTANCE_MIN (2^-24), and a tile stops when all its pixels have. What is dropped weighs at most 2^-24 of the
  colours behind (half an ulp of 1.0): below float32 rounding for colours in [0, 1]. Gradients of the
  dropped Gaussians, as small, are zero. The threshold also keeps the backward's divisions safe.
* The backward recovers transmittance by division and the colour behind a Gaussian through a
  subtraction c - (colour seen in front of it); for alpha near ALPHA_MAX this loses up to
  log2(1 / (1 - alpha)) bits (about 1e-4 relative at alpha = 0.999) of that Gaussian's alpha gradient.
* Gradients are sums over pixels in float32 in a different order than autograd's, finished with
  atomics whose order changes from run to run: last-bit differences, not bit-reproducible on a GPU.

Under TRITON_INTERPRET=1 (CPU tensors) the same kernels run in Triton's interpreter; the tests use it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from kernels.binning import TILE, TileBins, bin_gaussians
from kernels.pair_bound import PairBound
from kernels.geometry import ALPHA_MAX, CUTOFF_MAHALANOBIS_SQ, MODES

TRANSMITTANCE_MIN = 2.0**-24  # early stop: a pixel this opaque takes no more contributions
N_PARAMS = tl.constexpr(9)  # row of the parameter (and gradient) table: mx, my, conic a, b, c, opacity, r, g, b
BLOCK_N = 128  # Gaussians per program in the per-Gaussian kernels

# Gaussians per chunk and warps per tile program. On a GPU the [256, BLOCK_G] blocks must fit in
# registers (the backward holds about twice as many as the forward); the interpreter runs fastest on
# few, large blocks. bench/kernel_speed.py --sweep times other choices.
LAUNCH = {
    "gpu": {"forward": {"BLOCK_G": 32, "num_warps": 8}, "backward": {"BLOCK_G": 16, "num_warps": 8}},
    "interpreter": {"forward": {"BLOCK_G": 64, "num_warps": 4}, "backward": {"BLOCK_G": 64, "num_warps": 4}},
}

_empty = torch.empty  # every output buffer the kernels must fill comes from here (tests poison it)


# --------------------------------------------------------------------------------------------------
# Per-Gaussian preparation
# --------------------------------------------------------------------------------------------------


@triton.jit
def _prepare_kernel(
    means_ptr,  # [N, 2]
    scales_ptr,  # [N, 2]
    rot_ptr,  # [N]
    colors_ptr,  # [N, 3]
    opac_ptr,  # [N]
    params_ptr,  # [N, 9] float32 out: mx, my, a, b, c, opacity, r, g, b
    conic64_ptr,  # [N, 3] float64 out: a, b, c
    n,
    stride_mn, stride_sn, stride_rn, stride_cn, stride_on,
    BLOCK_N: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < n
    s1 = tl.load(scales_ptr + offs * stride_sn, mask=m, other=1.0).to(tl.float64)
    s2 = tl.load(scales_ptr + offs * stride_sn + 1, mask=m, other=1.0).to(tl.float64)
    th = tl.load(rot_ptr + offs * stride_rn, mask=m, other=0.0).to(tl.float64)
    # geometry.conics, in float64: the cut-off test needs it, and float32 is then rounded once.
    cos, sin = tl.cos(th), tl.sin(th)
    inv1, inv2 = 1.0 / (s1 * s1), 1.0 / (s2 * s2)
    a = cos * cos * inv1 + sin * sin * inv2
    b = cos * sin * (inv1 - inv2)
    c = sin * sin * inv1 + cos * cos * inv2
    tl.store(conic64_ptr + offs * 3 + 0, a, mask=m)
    tl.store(conic64_ptr + offs * 3 + 1, b, mask=m)
    tl.store(conic64_ptr + offs * 3 + 2, c, mask=m)
    row = params_ptr + offs * N_PARAMS
    tl.store(row + 0, tl.load(means_ptr + offs * stride_mn, mask=m), mask=m)
    tl.store(row + 1, tl.load(means_ptr + offs * stride_mn + 1, mask=m), mask=m)
    tl.store(row + 2, a.to(tl.float32), mask=m)
    tl.store(row + 3, b.to(tl.float32), mask=m)
    tl.store(row + 4, c.to(tl.float32), mask=m)
    tl.store(row + 5, tl.load(opac_ptr + offs * stride_on, mask=m), mask=m)
    tl.store(row + 6, tl.load(colors_ptr + offs * stride_cn + 0, mask=m), mask=m)
    tl.store(row + 7, tl.load(colors_ptr + offs * stride_cn + 1, mask=m), mask=m)
    tl.store(row + 8, tl.load(colors_ptr + offs * stride_cn + 2, mask=m), mask=m)


def _prepare(means, scales, rotations, colors, opacities) -> tuple[Tensor, Tensor]:
    n = means.shape[0]
    params = torch.empty(n, N_PARAMS, dtype=torch.float32, device=means.device)
    conic64 = torch.empty(n, 3, dtype=torch.float64, device=means.device)
    if n > 0:
        _prepare_kernel[(triton.cdiv(n, BLOCK_N),)](
            means, scales, rotations, colors, opacities, params, conic64, n,
            means.stride(0), scales.stride(0), rotations.stride(0), colors.stride(0), opacities.stride(0),
            BLOCK_N=BLOCK_N,
        )
    return params, conic64


# --------------------------------------------------------------------------------------------------
# Pieces shared by the forward and backward tile kernels
# --------------------------------------------------------------------------------------------------


@triton.jit
def _tile_pixels(pid, tiles_x, height, width, TILE: tl.constexpr):
    """Pixel coordinates of tile ``pid`` as one [TILE * TILE] block, row-major, and which are in the image."""
    p = tl.arange(0, TILE * TILE)
    px = (pid % tiles_x) * TILE + p % TILE
    py = (pid // tiles_x) * TILE + p // TILE
    return px, py, (px < width) & (py < height)


@triton.jit
def _load_chunk(params_ptr, conic64_ptr, gids_ptr, offs, gm):
    """Parameters of the Gaussians at list positions ``offs`` ([BLOCK_G]); masked lanes read Gaussian 0."""
    g = tl.load(gids_ptr + offs, mask=gm, other=0)
    row = params_ptr + g * N_PARAMS
    mx = tl.load(row + 0, mask=gm, other=0.0)
    my = tl.load(row + 1, mask=gm, other=0.0)
    op = tl.load(row + 5, mask=gm, other=0.0)
    a64 = tl.load(conic64_ptr + g * 3 + 0, mask=gm, other=0.0)
    b64 = tl.load(conic64_ptr + g * 3 + 1, mask=gm, other=0.0)
    c64 = tl.load(conic64_ptr + g * 3 + 2, mask=gm, other=0.0)
    return g, mx, my, op, a64, b64, c64


@triton.jit
def _gaussian_at_pixels(cx, cy, mx, my, op, a64, b64, c64, gm, CUTOFF: tl.constexpr):
    """[pixels, BLOCK_G] offsets, cut-off mask, exp(-maha / 2) and unclamped alpha."""
    # float64 distance, same operation order as the reference, so the cut-off decision agrees with it.
    dx = cx[:, None] - mx.to(tl.float64)[None, :]
    dy = cy[:, None] - my.to(tl.float64)[None, :]
    maha = a64[None, :] * dx * dx + 2.0 * b64[None, :] * dx * dy + c64[None, :] * dy * dy
    inside = (maha <= CUTOFF) & gm[None, :]
    gauss = tl.exp(-0.5 * maha.to(tl.float32))
    raw = op[None, :] * gauss
    return dx.to(tl.float32), dy.to(tl.float32), inside, gauss, raw


@triton.jit
def _column(x, cols, k):
    """Column ``k`` of a [pixels, BLOCK_G] block, as a [pixels] vector."""
    return tl.sum(tl.where(cols[None, :] == k, x, 0.0), axis=1)


# --------------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------------


@triton.jit
def _blend_forward_kernel(
    params_ptr,  # [N, 9] float32: mx, my, a, b, c, opacity, r, g, b
    conic64_ptr,  # [N, 3] float64: a, b, c
    ranges_ptr,  # [tiles + 1] int32: tile t blends gids[ranges[t]:ranges[t + 1]]
    gids_ptr,  # [P] int32
    image_ptr,  # [H, W, 3] float32 out
    trans_ptr,  # [H, W] float32 out ("alpha" mode): transmittance after the last contribution
    last_ptr,  # [H, W] int32 out ("alpha" mode): list position of the last contribution, -1 if none
    height, width, tiles_x,
    stride_ih, stride_iw,
    CUTOFF: tl.constexpr, ALPHA_MAX: tl.constexpr, T_MIN: tl.constexpr,
    ALPHA_MODE: tl.constexpr, TILE: tl.constexpr, BLOCK_G: tl.constexpr,
):
    pid = tl.program_id(0)
    px, py, valid = _tile_pixels(pid, tiles_x, height, width, TILE)
    cx = px.to(tl.float64) + 0.5
    cy = py.to(tl.float64) + 0.5
    start = tl.load(ranges_ptr + pid)
    end = tl.load(ranges_ptr + pid + 1)
    cols = tl.arange(0, BLOCK_G)

    # Pixels outside the image start with zero transmittance: never blended, never keep the tile going.
    trans = tl.where(valid, 1.0, 0.0)
    last = tl.full([TILE * TILE], -1, tl.int32)
    acc_r = tl.zeros([TILE * TILE], tl.float32)
    acc_g = tl.zeros([TILE * TILE], tl.float32)
    acc_b = tl.zeros([TILE * TILE], tl.float32)
    for s in range(start, end, BLOCK_G):
        if tl.max(trans, axis=0) >= T_MIN:  # early stop once every pixel of the tile is opaque
            offs = s + cols
            gm = offs < end
            g, mx, my, op, a64, b64, c64 = _load_chunk(params_ptr, conic64_ptr, gids_ptr, offs, gm)
            dx, dy, inside, gauss, raw = _gaussian_at_pixels(cx, cy, mx, my, op, a64, b64, c64, gm, CUTOFF)
            alpha = tl.where(inside, tl.minimum(raw, ALPHA_MAX), 0.0)
            if ALPHA_MODE:
                keep = 1.0 - alpha
                behind = trans[:, None] * tl.cumprod(keep, axis=1)  # transmittance behind each Gaussian
                # A Gaussian contributes while the transmittance in front of it is >= T_MIN. ``behind``
                # never increases along the chunk, so counting its entries >= T_MIN gives the prefix
                # that contributes (plus the one Gaussian that crosses the threshold) without rounding
                # ever letting a later Gaussian back in.
                n_open = tl.sum((behind >= T_MIN).to(tl.int32), axis=1)
                active = (cols[None, :] <= n_open[:, None]) & (trans >= T_MIN)[:, None]
                weight = tl.where(active, alpha * (behind / keep), 0.0)  # alpha * transmittance in front
                trans = tl.min(tl.where(active, behind, trans[:, None]), axis=1)
                hit = active & (alpha > 0.0)
                last = tl.maximum(last, tl.max(tl.where(hit, offs[None, :], -1), axis=1))
            else:
                weight = alpha
            r = tl.load(params_ptr + g * N_PARAMS + 6, mask=gm, other=0.0)
            gg = tl.load(params_ptr + g * N_PARAMS + 7, mask=gm, other=0.0)
            b = tl.load(params_ptr + g * N_PARAMS + 8, mask=gm, other=0.0)
            acc_r += tl.sum(weight * r[None, :], axis=1)
            acc_g += tl.sum(weight * gg[None, :], axis=1)
            acc_b += tl.sum(weight * b[None, :], axis=1)

    out = image_ptr + py * stride_ih + px * stride_iw
    tl.store(out + 0, acc_r, mask=valid)
    tl.store(out + 1, acc_g, mask=valid)
    tl.store(out + 2, acc_b, mask=valid)
    if ALPHA_MODE:
        tl.store(trans_ptr + py * width + px, trans, mask=valid)
        tl.store(last_ptr + py * width + px, last, mask=valid)


def _blend_forward(params, conic64, bins: TileBins, height, width, mode) -> tuple[Tensor, Tensor, Tensor]:
    device = params.device
    image = _empty(height, width, 3, dtype=torch.float32, device=device)
    trans = _empty(height, width, dtype=torch.float32, device=device)
    last = _empty(height, width, dtype=torch.int32, device=device)
    cfg = _launch_config(device, "forward")
    _blend_forward_kernel[(bins.tiles_x * bins.tiles_y,)](
        params, conic64, bins.ranges, bins.gids, image, trans, last,
        height, width, bins.tiles_x, image.stride(0), image.stride(1),
        CUTOFF=CUTOFF_MAHALANOBIS_SQ, ALPHA_MAX=ALPHA_MAX, T_MIN=TRANSMITTANCE_MIN,
        ALPHA_MODE=mode == "alpha", TILE=TILE, **cfg,
    )
    return image, trans, last


# --------------------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------------------


@triton.jit
def _blend_backward_kernel(
    params_ptr,  # [N, 9] float32: mx, my, a, b, c, opacity, r, g, b
    conic64_ptr,  # [N, 3] float64
    ranges_ptr,  # [tiles + 1] int32
    gids_ptr,  # [P] int32
    trans_ptr,  # [H, W] float32 from the forward ("alpha" mode)
    last_ptr,  # [H, W] int32 from the forward ("alpha" mode)
    grad_image_ptr,  # [H, W, 3] float32: dL/dimage
    grads_ptr,  # [N, 9] float32, zeroed: dL/dparams, accumulated with atomics
    height, width, tiles_x,
    stride_gh, stride_gw, stride_gc,
    CUTOFF: tl.constexpr, ALPHA_MAX: tl.constexpr,
    ALPHA_MODE: tl.constexpr, TILE: tl.constexpr, BLOCK_G: tl.constexpr,
):
    pid = tl.program_id(0)
    px, py, valid = _tile_pixels(pid, tiles_x, height, width, TILE)
    cx = px.to(tl.float64) + 0.5
    cy = py.to(tl.float64) + 0.5
    start = tl.load(ranges_ptr + pid)
    end = tl.load(ranges_ptr + pid + 1)
    cols = tl.arange(0, BLOCK_G)
    grad_px = grad_image_ptr + py * stride_gh + px * stride_gw
    gr = tl.load(grad_px, mask=valid, other=0.0)
    gg = tl.load(grad_px + stride_gc, mask=valid, other=0.0)
    gb = tl.load(grad_px + 2 * stride_gc, mask=valid, other=0.0)

    if ALPHA_MODE:
        last = tl.load(last_ptr + py * width + px, mask=valid, other=-1)
        trans = tl.load(trans_ptr + py * width + px, mask=valid, other=1.0)  # behind the current chunk
        hi = tl.max(last, axis=0)  # nothing after the tile's last contribution matters
    else:
        last = tl.full([TILE * TILE], 0, tl.int32)
        trans = tl.full([TILE * TILE], 1.0, tl.float32)
        hi = end - 1
    # Colour behind the current chunk, as seen from just in front of it (black background).
    seen_r = tl.zeros([TILE * TILE], tl.float32)
    seen_g = tl.zeros([TILE * TILE], tl.float32)
    seen_b = tl.zeros([TILE * TILE], tl.float32)

    n_chunks = (tl.maximum(hi - start + 1, 0) + BLOCK_G - 1) // BLOCK_G
    for j in range(0, n_chunks):
        offs = hi - j * BLOCK_G - cols  # back to front: column 0 is the rearmost Gaussian
        gm = offs >= start
        g, mx, my, op, a64, b64, c64 = _load_chunk(params_ptr, conic64_ptr, gids_ptr, offs, gm)
        dx, dy, inside, gauss, raw = _gaussian_at_pixels(cx, cy, mx, my, op, a64, b64, c64, gm, CUTOFF)
        if ALPHA_MODE:
            inside = inside & (offs[None, :] <= last[:, None])
        alpha = tl.where(inside, tl.minimum(raw, ALPHA_MAX), 0.0)
        r = tl.load(params_ptr + g * N_PARAMS + 6, mask=gm, other=0.0)
        gc = tl.load(params_ptr + g * N_PARAMS + 7, mask=gm, other=0.0)
        b = tl.load(params_ptr + g * N_PARAMS + 8, mask=gm, other=0.0)

        if ALPHA_MODE:
            keep = 1.0 - alpha
            # q[k]: product of (1 - alpha) over Gaussian k and those behind it in the chunk. The forward's
            # early stop keeps transmittance >= T_MIN * (1 - ALPHA_MAX) here, so the division is safe.
            q = tl.cumprod(keep, axis=1)
            front = trans[:, None] / q  # transmittance in front of each Gaussian
            aq = alpha / q
            # Colour of Gaussian k and everything behind it, seen from just in front of k:
            #   V_k = q_k * (sum_{m <= k} alpha_m c_m / q_m + V_behind_chunk)
            # and dC/dalpha_k = T_k (c_k - V_behind_k) = T_k (c_k - V_k) / (1 - alpha_k).
            v_r = q * (tl.cumsum(aq * r[None, :], axis=1) + seen_r[:, None])
            v_g = q * (tl.cumsum(aq * gc[None, :], axis=1) + seen_g[:, None])
            v_b = q * (tl.cumsum(aq * b[None, :], axis=1) + seen_b[:, None])
            d_alpha = (gr[:, None] * (r[None, :] - v_r) + gg[:, None] * (gc[None, :] - v_g)
                       + gb[:, None] * (b[None, :] - v_b)) * (front / keep)
            weight = alpha * front
            # Step in front of the chunk for the next one.
            trans = tl.max(front, axis=1)
            seen_r = _column(v_r, cols, BLOCK_G - 1)
            seen_g = _column(v_g, cols, BLOCK_G - 1)
            seen_b = _column(v_b, cols, BLOCK_G - 1)
        else:
            d_alpha = gr[:, None] * r[None, :] + gg[:, None] * gc[None, :] + gb[:, None] * b[None, :]
            weight = alpha

        # Through the clamp (torch's clamp passes the gradient at equality) and the Gaussian.
        d_alpha = tl.where(inside & (raw <= ALPHA_MAX), d_alpha, 0.0)
        d_maha = -0.5 * d_alpha * raw
        a = tl.load(params_ptr + g * N_PARAMS + 2, mask=gm, other=0.0)
        bb = tl.load(params_ptr + g * N_PARAMS + 3, mask=gm, other=0.0)
        c = tl.load(params_ptr + g * N_PARAMS + 4, mask=gm, other=0.0)
        d_mx = -tl.sum(d_maha * (2.0 * a[None, :] * dx + 2.0 * bb[None, :] * dy), axis=0)
        d_my = -tl.sum(d_maha * (2.0 * bb[None, :] * dx + 2.0 * c[None, :] * dy), axis=0)
        row = grads_ptr + g * N_PARAMS
        tl.atomic_add(row + 0, d_mx, mask=gm, sem="relaxed")
        tl.atomic_add(row + 1, d_my, mask=gm, sem="relaxed")
        tl.atomic_add(row + 2, tl.sum(d_maha * dx * dx, axis=0), mask=gm, sem="relaxed")
        tl.atomic_add(row + 3, tl.sum(d_maha * 2.0 * dx * dy, axis=0), mask=gm, sem="relaxed")
        tl.atomic_add(row + 4, tl.sum(d_maha * dy * dy, axis=0), mask=gm, sem="relaxed")
        tl.atomic_add(row + 5, tl.sum(d_alpha * gauss, axis=0), mask=gm, sem="relaxed")
        tl.atomic_add(row + 6, tl.sum(weight * gr[:, None], axis=0), mask=gm, sem="relaxed")
        tl.atomic_add(row + 7, tl.sum(weight * gg[:, None], axis=0), mask=gm, sem="relaxed")
        tl.atomic_add(row + 8, tl.sum(weight * gb[:, None], axis=0), mask=gm, sem="relaxed")


@triton.jit
def _conic_grad_kernel(
    scales_ptr,  # [N, 2]
    rot_ptr,  # [N]
    grads_ptr,  # [N, 9] float32: dL/d(a, b, c) in columns 2..4
    grad_scales_ptr,  # [N, 2] float32 out
    grad_rot_ptr,  # [N] float32 out
    n,
    stride_sn, stride_rn,
    BLOCK_N: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < n
    s1 = tl.load(scales_ptr + offs * stride_sn, mask=m, other=1.0).to(tl.float64)
    s2 = tl.load(scales_ptr + offs * stride_sn + 1, mask=m, other=1.0).to(tl.float64)
    th = tl.load(rot_ptr + offs * stride_rn, mask=m, other=0.0).to(tl.float64)
    ga = tl.load(grads_ptr + offs * N_PARAMS + 2, mask=m, other=0.0).to(tl.float64)
    gb = tl.load(grads_ptr + offs * N_PARAMS + 3, mask=m, other=0.0).to(tl.float64)
    gc = tl.load(grads_ptr + offs * N_PARAMS + 4, mask=m, other=0.0).to(tl.float64)
    cos, sin = tl.cos(th), tl.sin(th)
    inv1, inv2 = 1.0 / (s1 * s1), 1.0 / (s2 * s2)
    # a = cos^2 inv1 + sin^2 inv2, b = cos sin (inv1 - inv2), c = sin^2 inv1 + cos^2 inv2, inv = s^-2.
    g_inv1 = ga * cos * cos + gb * cos * sin + gc * sin * sin
    g_inv2 = ga * sin * sin - gb * cos * sin + gc * cos * cos
    g_th = (inv1 - inv2) * (2.0 * cos * sin * (gc - ga) + (cos * cos - sin * sin) * gb)
    tl.store(grad_scales_ptr + offs * 2 + 0, (-2.0 * g_inv1 * inv1 / s1).to(tl.float32), mask=m)
    tl.store(grad_scales_ptr + offs * 2 + 1, (-2.0 * g_inv2 * inv2 / s2).to(tl.float32), mask=m)
    tl.store(grad_rot_ptr + offs, g_th.to(tl.float32), mask=m)


def _blend_backward(grad_image, params, conic64, bins: TileBins, trans, last, height, width, mode) -> Tensor:
    device = params.device
    grads = torch.zeros(params.shape[0], N_PARAMS, dtype=torch.float32, device=device)
    if params.shape[0] == 0:
        return grads
    cfg = _launch_config(device, "backward")
    _blend_backward_kernel[(bins.tiles_x * bins.tiles_y,)](
        params, conic64, bins.ranges, bins.gids, trans, last, grad_image, grads,
        height, width, bins.tiles_x, grad_image.stride(0), grad_image.stride(1), grad_image.stride(2),
        CUTOFF=CUTOFF_MAHALANOBIS_SQ, ALPHA_MAX=ALPHA_MAX, ALPHA_MODE=mode == "alpha", TILE=TILE, **cfg,
    )
    return grads


def _conic_grads(scales, rotations, grads) -> tuple[Tensor, Tensor]:
    n = scales.shape[0]
    grad_scales = torch.empty(n, 2, dtype=torch.float32, device=scales.device)
    grad_rot = torch.empty(n, dtype=torch.float32, device=scales.device)
    if n > 0:
        _conic_grad_kernel[(triton.cdiv(n, BLOCK_N),)](
            scales, rotations, grads, grad_scales, grad_rot, n, scales.stride(0), rotations.stride(0),
            BLOCK_N=BLOCK_N,
        )
    return grad_scales, grad_rot


# --------------------------------------------------------------------------------------------------
# Autograd and the public entry point
# --------------------------------------------------------------------------------------------------


def _launch_config(device: torch.device, which: str) -> dict:
    return LAUNCH["gpu" if device.type == "cuda" else "interpreter"][which]


class _BlendTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, scales, rotations, colors, opacities, height, width, mode, bound):
        bins = bin_gaussians(means, scales, rotations, height, width, bound)
        params, conic64 = _prepare(means, scales, rotations, colors, opacities)
        image, trans, last = _blend_forward(params, conic64, bins, height, width, mode)
        ctx.save_for_backward(scales, rotations, params, conic64, bins.ranges, bins.gids, trans, last)
        ctx.meta = (height, width, mode, bins.tiles_x, bins.tiles_y)
        return image

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image):
        scales, rotations, params, conic64, ranges, gids, trans, last = ctx.saved_tensors
        height, width, mode, tiles_x, tiles_y = ctx.meta
        bins = TileBins(ranges, gids, tiles_x, tiles_y)
        grad_image = grad_image.to(torch.float32)
        grads = _blend_backward(grad_image, params, conic64, bins, trans, last, height, width, mode)
        grad_scales, grad_rot = _conic_grads(scales, rotations, grads)
        return grads[:, 0:2], grad_scales, grad_rot, grads[:, 6:9], grads[:, 5], None, None, None, None


def render_triton(
    means: Tensor,  # [N, 2] (x, y) in pixels
    scales: Tensor,  # [N, 2] standard deviations, pixels, > 0
    rotations: Tensor,  # [N] radians
    colors: Tensor,  # [N, 3]
    opacities: Tensor,  # [N] in [0, 1]
    height: int,
    width: int,
    mode: str = "alpha",
    bound: PairBound | None = None,  # sizes binning's buffers with no read back (see kernels.pair_bound)
) -> Tensor:  # [H, W, 3], dtype of ``colors``
    """``render_reference`` with Triton kernels: float32 inside, differentiable in every tensor."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    args = [t.to(torch.float32).contiguous() for t in (means, scales, rotations, colors, opacities)]
    image = _BlendTriton.apply(*args, height, width, mode, bound)
    return image.to(colors.dtype)
