"""What every renderer agrees on: the cut-off, the alpha clamp, and each Gaussian's conic and pixel box.

Conventions shared by every backend (see ``kernels/__init__.py``):
* pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5);
* a Gaussian reaches a pixel iff its Mahalanobis distance d^T S^-1 d <= CUTOFF_MAHALANOBIS_SQ (3 sigma);
* alpha = min(opacity * exp(-0.5 d^T S^-1 d), ALPHA_MAX);
* "alpha" mode blends in index order, C = sum_i c_i a_i prod_{j<i} (1 - a_j), on a black background;
  "sum" mode accumulates, C = sum_i c_i a_i.

The functions take numpy arrays or torch tensors alike and compute with the functions of the argument's own
library, so the decoder runs them without torch while the trainer and the reference get the same formulas,
differentiable, on any device. This module imports no torch.
"""

from __future__ import annotations

import importlib

import numpy as np

CUTOFF_MAHALANOBIS_SQ = 9.0  # 3 sigma
ALPHA_MAX = 0.999  # keeps log(1 - alpha) finite
MODES = ("alpha", "sum")


def namespace(array):
    """numpy for a numpy array, else torch (already loaded by whoever made the tensor)."""
    return np if isinstance(array, np.ndarray) else importlib.import_module("torch")


def conics(
    scales,  # [N, 2] standard deviations along the rotated axes
    rotations,  # [N] radians
):  # ([N] a, [N] b, [N] c)
    """Inverse covariance (a, b, c) with S^-1 = [[a, b], [b, c]], for S = R diag(s^2) R^T."""
    xp = namespace(rotations)
    cos, sin = xp.cos(rotations), xp.sin(rotations)
    # 1 / (s * s), not s ** -2: torch computes its pow(-2) so, numpy's power would round differently.
    inv1, inv2 = 1 / (scales[:, 0] * scales[:, 0]), 1 / (scales[:, 1] * scales[:, 1])
    a = cos * cos * inv1 + sin * sin * inv2
    b = cos * sin * (inv1 - inv2)
    c = sin * sin * inv1 + cos * cos * inv2
    return a, b, c


def extents(
    scales,  # [N, 2]
    rotations,  # [N]
):  # ([N], [N])
    """Half-widths in x and y of the axis-aligned box holding each Gaussian's 3-sigma ellipse."""
    xp = namespace(rotations)
    cos, sin = xp.cos(rotations), xp.sin(rotations)
    var1, var2 = scales[:, 0] * scales[:, 0], scales[:, 1] * scales[:, 1]
    var_x = cos * cos * var1 + sin * sin * var2
    var_y = sin * sin * var1 + cos * cos * var2
    k = CUTOFF_MAHALANOBIS_SQ**0.5
    return k * xp.sqrt(var_x), k * xp.sqrt(var_y)


def pixel_boxes(
    means,  # [N, 2]
    scales,  # [N, 2]
    rotations,  # [N]
    height: int,
    width: int,
):  # [N, 4] int64: x0, y0, x1, y1 inclusive; empty when x1 < x0 or y1 < y0
    """Pixel rectangle whose centres may fall inside each Gaussian's 3-sigma ellipse (not differentiable)."""
    xp = namespace(means)
    ex, ey = extents(float64(scales), float64(rotations))
    mx, my = float64(means[:, 0]), float64(means[:, 1])
    x0 = xp.clip(xp.ceil(mx - ex - 0.5), 0, None)
    x1 = xp.clip(xp.floor(mx + ex - 0.5), None, width - 1)
    y0 = xp.clip(xp.ceil(my - ey - 0.5), 0, None)
    y1 = xp.clip(xp.floor(my + ey - 0.5), None, height - 1)
    boxes = xp.stack([x0, y0, x1, y1], 1)
    # NaN or infinite parameters give no pixels rather than an unbounded box.
    boxes = xp.nan_to_num(boxes, nan=-1.0, posinf=-1.0, neginf=-1.0)
    boxes = xp.clip(boxes, -1, max(height, width))
    return boxes.astype(np.int64) if xp is np else boxes.long()


def float64(array):  # a float64 copy of a numpy array or a detached one of a tensor (its device kept)
    return array.astype(np.float64) if isinstance(array, np.ndarray) else array.detach().double()
