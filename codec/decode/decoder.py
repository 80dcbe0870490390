"""Bytes to pixels. Imports no optimiser and no trainable model: parsing, dequantising and one forward render.

On the CPU (the default) everything is numpy and the numba renderer (``kernels.numba_tiles``): a decode never
loads torch. Another device renders with torch, imported then.

A decode's cost is bounded before anything image-sized is allocated: the bitstream's N by the payload it
carries (codec/format/bitstream.py), the output by ``max_pixels`` and the work by ``max_evaluations``: the
Gaussian-pixel pairs inside the Gaussians' 3-sigma boxes, plus ``GAUSSIAN_COST`` for each Gaussian's own
setup (parsing, dequantising, binning), which dominates when many Gaussians cover few pixels. The service
sets both limits.
"""

from __future__ import annotations

import numpy as np

from codec.decode.dequantise import to_render_inputs
from codec.decode.texture import residual, synthesised_pixels
from codec.decode.view import plan_view
from codec.errors import DecodeLimitError
from codec.format.bitstream import MAX_PIXELS, parse_header, read_bitstream
from codec.format.texture import latent_count, layer_shapes, read_texture, texture_form
from codec.format.values import background_color
from kernels.geometry import pixel_boxes
from kernels.numba_tiles import render_numpy

# Default upper bound on the work, in (pixel, Gaussian) evaluations: room for any file the format allows
# (about a minute of CPU); a server sets its own, far lower (GSIC_DECODE_MAX_EVALUATIONS).
MAX_EVALUATIONS = 1 << 32
# What one Gaussian costs a decode besides its pixels, in evaluations: its measured setup cost with a margin,
# so a file of many tiny Gaussians is bounded too.
GAUSSIAN_COST = 256
# What a texture layer costs, in evaluations: per latent it decodes, and per pixel it synthesises for each
# MACS_PER_EVALUATION multiply-adds of its network; measured against the render's cost per Gaussian-pixel
# pair, with a margin.
LATENT_COST = 2
MACS_PER_EVALUATION = 64


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
    means, scales, rotations, colors, opacities = to_render_inputs(q)
    means, scales, rotations, opacities = view.map(means, scales, rotations, opacities)
    work = claimed + count_evaluations(means, scales, rotations, view.height, view.width)
    if header.texture_length:
        section = data[header.texture_start: header.texture_start + header.texture_length]
        work += texture_evaluations(section, layout.width, layout.height, synthesised_pixels(view))
    if work > max_evaluations:
        raise DecodeLimitError("evaluations", f"rendering would take {work} Gaussian-pixel evaluations (with "
                                              f"{GAUSSIAN_COST} per Gaussian), more than the {max_evaluations} allowed")
    inputs = (means, scales, rotations, colors, opacities, view.height, view.width, layout.blend_mode)
    image = render_numpy(*inputs) if device is None or str(device) == "cpu" else _render_on(device, *inputs)
    # In place: no second float image on the decode path.
    if layout.background is not None:
        image += background_color(layout.background)
    if header.texture_length:
        image += residual(read_texture(section, layout.width, layout.height, header.texture_context), view)
    np.clip(image, 0, 1, out=image)
    image *= 255
    return np.rint(image, out=image).astype(np.uint8)


def count_evaluations(
    means: np.ndarray,  # [N, 2]
    scales: np.ndarray,  # [N, 2]
    rotations: np.ndarray,  # [N]
    height: int,
    width: int,
) -> int:
    """Gaussian-pixel pairs the render visits at most (the pixels of each Gaussian's 3-sigma box)."""
    boxes = pixel_boxes(means, scales, rotations, height, width)
    sides = np.maximum(boxes[:, 2:] - boxes[:, :2] + 1, 0)  # [N, 2] box width, height
    return int((sides[:, 0] * sides[:, 1]).sum())


def texture_evaluations(section: bytes, width: int, height: int, pixels: int) -> int:
    """What a texture section costs a decode that synthesises ``pixels``, in evaluations."""
    levels, hidden = texture_form(section)
    macs = sum(inputs * outputs for inputs, outputs in layer_shapes(levels, hidden))
    return LATENT_COST * latent_count(width, height, levels) + pixels * -(-macs // MACS_PER_EVALUATION)


def _render_on(device: str, means, scales, rotations, colors, opacities, height: int, width: int,
               mode: str) -> np.ndarray:  # [H, W, 3] float32
    """The render on a torch device (a GPU: the Triton kernels), the only torch a decode may load."""
    import torch

    from kernels import render

    tensors = [torch.as_tensor(a, device=device) for a in (means, scales, rotations, colors, opacities)]
    with torch.no_grad():
        return render(*tensors, height, width, mode).cpu().numpy()
