"""The file's integers back to what the renderer draws: positions, scales and rotations, colours, opacities."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from codec.format.values import QuantizedGaussians, dequantize_uniform
from kernels.geometry import namespace


# float32 numpy whose exp and atan2 are taken in float64 and rounded once: numpy's own float32 exp and atan2
# are an ulp off the correctly rounded value far more often than torch's, which the trainer rendered with.
ROUNDED_FLOAT32 = SimpleNamespace(
    sqrt=np.sqrt, stack=np.stack,
    exp=lambda a: np.exp(a.astype(np.float64)).astype(np.float32),
    atan2=lambda y, x: np.atan2(y.astype(np.float64), x.astype(np.float64)).astype(np.float32),
)


def scales_and_rotation(log_cov, xp=None):  # [N, 3] -> ([N, 2] scales, [N] rotation), with xp's functions
    """Inverse of ``log_covariance`` (closed-form eigen-decomposition of a symmetric 2 x 2 matrix); ``xp``
    defaults to the library of ``log_cov`` (numpy or torch)."""
    xp = xp or namespace(log_cov)
    xx, xy, yy = log_cov.T
    mean, half_diff = (xx + yy) / 2, (xx - yy) / 2
    radius = xp.sqrt(half_diff * half_diff + xy * xy + 1e-12)  # the epsilon keeps gradients finite when round
    scales = xp.stack([xp.exp((mean + radius) / 2), xp.exp((mean - radius) / 2)], 1)
    return scales, 0.5 * xp.atan2(2 * xy, xx - yy)


def to_render_inputs(
    q: QuantizedGaussians,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # float32: means [N, 2], scales [N, 2],
    # rotations [N], colors [N, 3], opacities [N]
    """What the decoder renders: codebooks and positions back to floats, in file order."""
    layout = q.layout
    xy = layout.grid.to_pixels(q.x, q.y)
    shape_ranges, color_ranges = layout.range_arrays()
    shape = dequantize_uniform(q.shape_codebook, shape_ranges, layout.shape_bits)[q.shape_index]
    color = dequantize_uniform(q.color_codebook, color_ranges, layout.color_bits)[q.color_index]
    scales, rotation = scales_and_rotation(shape, ROUNDED_FLOAT32)  # the trainer's float32 steps, in its order
    as_f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return as_f32(xy), as_f32(scales), as_f32(rotation), as_f32(color[:, :3]), as_f32(color[:, 3])
