"""Pure-PyTorch 2D Gaussian renderer: the CPU fallback and the test oracle of every faster path.

The renderer works on a ragged list of (pixel, Gaussian) pairs rather than on padded tiles, so its
memory and time grow with the number of pairs that actually overlap, not with the most crowded tile.
Everything here is plain differentiable torch; autograd gives the backward pass.

Conventions (pixel centres, cut-off, alpha clamp, blending) are ``kernels.geometry``'s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.geometry import ALPHA_MAX, CUTOFF_MAHALANOBIS_SQ, MODES, conics, pixel_boxes


def pixel_pairs(
    means: Tensor,  # [N, 2]
    scales: Tensor,  # [N, 2]
    rotations: Tensor,  # [N]
    height: int,
    width: int,
) -> tuple[Tensor, Tensor]:  # ([P] pixel index y*W+x, [P] Gaussian index), sorted by pixel then Gaussian
    """Every (pixel, Gaussian) pair inside the 3-sigma ellipse, in blending order."""
    with torch.no_grad():
        boxes = pixel_boxes(means, scales, rotations, height, width)
        box_w = (boxes[:, 2] - boxes[:, 0] + 1).clamp(min=0)
        box_h = (boxes[:, 3] - boxes[:, 1] + 1).clamp(min=0)
        counts = box_w * box_h
        gid = torch.repeat_interleave(torch.arange(len(counts), device=means.device), counts)
        first = torch.cumsum(counts, 0) - counts
        local = torch.arange(len(gid), device=means.device) - first[gid]
        px = boxes[gid, 0] + local % box_w[gid]
        py = boxes[gid, 1] + local // box_w[gid]
        a, b, c = conics(scales.double(), rotations.double())
        dx = px.double() + 0.5 - means[gid, 0].double()
        dy = py.double() + 0.5 - means[gid, 1].double()
        maha = a[gid] * dx * dx + 2 * b[gid] * dx * dy + c[gid] * dy * dy
        keep = maha <= CUTOFF_MAHALANOBIS_SQ
        pix = (py * width + px)[keep]
        gid = gid[keep]
        # Pairs were generated Gaussian by Gaussian; a stable sort by pixel keeps index order within a pixel.
        pix, order = torch.sort(pix, stable=True)
        return pix, gid[order]


def render_reference(
    means: Tensor,  # [N, 2] (x, y) in pixels
    scales: Tensor,  # [N, 2] standard deviations, pixels, > 0
    rotations: Tensor,  # [N] radians
    colors: Tensor,  # [N, 3]
    opacities: Tensor,  # [N] in [0, 1]
    height: int,
    width: int,
    mode: str = "alpha",
) -> Tensor:  # [H, W, 3], dtype of ``colors``
    """Render by explicit (pixel, Gaussian) pairs; differentiable through autograd."""
    pix, gid = pixel_pairs(means, scales, rotations, height, width)
    a, b, c = conics(scales, rotations)
    dx = pix.remainder(width).to(means.dtype) + 0.5 - means[gid, 0]
    dy = pix.div(width, rounding_mode="floor").to(means.dtype) + 0.5 - means[gid, 1]
    maha = a[gid] * dx * dx + 2 * b[gid] * dx * dy + c[gid] * dy * dy
    alpha = (opacities[gid] * torch.exp(-0.5 * maha)).clamp(max=ALPHA_MAX)
    if mode == "alpha":
        weight = alpha * _exclusive_transmittance(alpha, pix)
    elif mode == "sum":
        weight = alpha
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out = colors.new_zeros(height * width, 3)
    out = out.index_add(0, pix, weight.to(colors.dtype)[:, None] * colors[gid])
    return out.view(height, width, 3)


def _exclusive_transmittance(
    alpha: Tensor,  # [P] sorted by pixel, then blending order
    pix: Tensor,  # [P] pixel index of each pair
) -> Tensor:  # [P] prod over earlier pairs of the same pixel of (1 - alpha)
    """Segmented exclusive product of (1 - alpha), as a float64 cumulative sum of logs."""
    log_keep = torch.log1p(-alpha.double())
    total = torch.cumsum(log_keep, 0)
    inclusive_before = total - log_keep
    starts = torch.ones_like(pix, dtype=torch.bool)
    starts[1:] = pix[1:] != pix[:-1]
    segment = torch.cumsum(starts.long(), 0) - 1
    offset = inclusive_before[starts][segment]
    return torch.exp(inclusive_before - offset).to(alpha.dtype)
