"""The file's integers back to what the renderer draws: positions, scales and rotations, colours, opacities."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from codec.format.values import QuantizedGaussians, dequantize_uniform


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
