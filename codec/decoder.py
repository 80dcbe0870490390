"""Bytes to pixels. Imports no optimiser and no trainable model: parsing, dequantising and one forward render."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from codec.bitstream import MAX_PIXELS, read_bitstream
from codec.errors import BitstreamError
from codec.quantized import to_render_inputs
from codec.view import plan_view
from kernels import render
from kernels.reference import pixel_boxes

# Upper bound on (pixel, Gaussian) evaluations a file may ask for, so a hostile file cannot stall a decode.
MAX_PAIRS = 400_000_000


def decode_array(data: bytes, device: str | None = None, *, width: int | None = None, height: int | None = None,
                 scale: float | None = None, box=None, max_pixels: int = MAX_PIXELS) -> np.ndarray:  # [H, W, 3] uint8
    q = read_bitstream(data)
    layout = q.layout
    view = plan_view(layout.width, layout.height, width=width, height=height, scale=scale, box=box,
                     max_pixels=max_pixels)
    means, scales, rotations, colors, opacities = to_render_inputs(q, device or "cpu")
    means, scales, rotations, opacities = view.map(means, scales, rotations, opacities)
    _check_work(means, scales, rotations, view.height, view.width)
    with torch.no_grad():
        image = render(means, scales, rotations, colors, opacities, view.height, view.width, layout.blend_mode)
    return to_uint8(image)


def to_uint8(image: Tensor) -> np.ndarray:  # [H, W, 3] float in [0, 1] -> uint8
    return (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _check_work(means: Tensor, scales: Tensor, rotations: Tensor, height: int, width: int) -> None:
    boxes = pixel_boxes(means, scales, rotations, height, width)
    pairs = ((boxes[:, 2] - boxes[:, 0] + 1).clamp(min=0) * (boxes[:, 3] - boxes[:, 1] + 1).clamp(min=0)).sum()
    if int(pairs) > MAX_PAIRS:
        raise BitstreamError("n_gaussians", f"rendering would take {int(pairs)} Gaussian-pixel evaluations, "
                                            f"more than the {MAX_PAIRS} allowed")
