"""Bytes to pixels. Imports no optimiser and no trainable model: parsing, dequantising and one forward render.

A decode's cost is bounded before anything image-sized is allocated: the bitstream's N by the payload it
carries (codec/format/bitstream.py), the output by ``max_pixels`` and the work by ``max_evaluations``: the
Gaussian-pixel pairs inside the Gaussians' 3-sigma boxes, plus ``GAUSSIAN_COST`` for each Gaussian's own
setup (parsing, dequantising, binning), which dominates when many Gaussians cover few pixels. The service
sets both limits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from codec.format.bitstream import MAX_PIXELS, parse_header, read_bitstream
from codec.errors import DecodeLimitError
from codec.decode.dequantise import to_render_inputs
from codec.format.values import background_color
from codec.decode.view import plan_view
from kernels import render
from kernels.reference import pixel_boxes

# Default upper bound on the work, in (pixel, Gaussian) evaluations: room for any file the format allows
# (about a minute of CPU); a server sets its own, far lower (GSIC_DECODE_MAX_EVALUATIONS).
MAX_EVALUATIONS = 1 << 32
# What one Gaussian costs a decode besides its pixels, in evaluations (one evaluation is about 9 ns). On
# this 2-core CPU, idle, a real 25,150-Gaussian Kodak file (2 bpp) decodes in 37 ms, pixels included: about
# 1.5 us a Gaussian, so 256 (2.3 us) errs on the safe side; under heavy load with spinning OpenMP threads it
# was up to 16 us, which the service's budget (GSIC_DECODE_MAX_EVALUATIONS) leaves room for by its margin.
GAUSSIAN_COST = 256


def decode_array(data: bytes, device: str | None = None, *, width: int | None = None, height: int | None = None,
                 scale: float | None = None, box=None, max_pixels: int = MAX_PIXELS,
                 max_evaluations: int = MAX_EVALUATIONS) -> np.ndarray:  # [H, W, 3] uint8
    header = parse_header(data)
    claimed = header.n_gaussians * GAUSSIAN_COST  # refused before the payload is even read
    if claimed > max_evaluations:
        raise DecodeLimitError("evaluations", f"its Gaussians alone cost {claimed} evaluations, more than the "
                                              f"{max_evaluations} allowed")
    q = read_bitstream(data, header)
    layout = q.layout
    view = plan_view(layout.width, layout.height, width=width, height=height, scale=scale, box=box,
                     max_pixels=max_pixels)
    means, scales, rotations, colors, opacities = to_render_inputs(q, device or "cpu")
    means, scales, rotations, opacities = view.map(means, scales, rotations, opacities)
    work = claimed + count_evaluations(means, scales, rotations, view.height, view.width)
    if work > max_evaluations:
        raise DecodeLimitError("evaluations", f"rendering would take {work} Gaussian-pixel evaluations (with "
                                              f"{GAUSSIAN_COST} per Gaussian), more than the {max_evaluations} allowed")
    with torch.no_grad():
        image = render(means, scales, rotations, colors, opacities, view.height, view.width, layout.blend_mode)
        # In place: no second float image on the decode path.
        if layout.background is not None:
            image.add_(torch.as_tensor(background_color(layout.background), device=image.device))
        return image.clamp_(0, 1).mul_(255).round_().to(torch.uint8).cpu().numpy()


def count_evaluations(means: Tensor, scales: Tensor, rotations: Tensor, height: int, width: int) -> int:
    """Gaussian-pixel pairs the render visits at most (the pixels of each Gaussian's 3-sigma box)."""
    boxes = pixel_boxes(means, scales, rotations, height, width)
    return int(((boxes[:, 2] - boxes[:, 0] + 1).clamp(min=0) * (boxes[:, 3] - boxes[:, 1] + 1).clamp(min=0)).sum())
