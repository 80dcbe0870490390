"""The numba tile renderer (``kernels.numba_tiles``) as a differentiable function of CPU tensors: the same
function as ``kernels.reference.render_reference``, with its gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from kernels.geometry import MODES
from kernels.numba_tiles import backward, forward, prepare

_NUMPY_TWIN = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _numpy(t: Tensor) -> np.ndarray:
    # numpy, not torch, converts to float64 (numba_tiles): a torch op on an image-sized tensor wakes torch's
    # OpenMP pool, whose spinning threads then compete with numba's for the same cores.
    t = t.detach()
    return (t if t.dtype in _NUMPY_TWIN else t.double()).numpy()  # bfloat16 has no numpy twin


def _tensor(a: np.ndarray, dtype: torch.dtype) -> Tensor:  # a copy of a, as dtype
    return torch.from_numpy(a.astype(_NUMPY_TWIN.get(dtype, np.float64))).to(dtype)


class _RenderCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, scales, rotations, colors, opacities, height, width, mode):
        conic, plan = prepare(means.detach(), scales.detach(), rotations.detach(), height, width)
        arrays = (_numpy(means), conic, _numpy(colors), _numpy(opacities))
        if not any(ctx.needs_input_grad) and colors.dtype == torch.float32:
            # Inference: float32 pixels straight from the tiles, the same values the cast of the float64 image
            # gives, at a third of the memory (no full-image float64 buffer, no copy).
            return torch.from_numpy(forward(*arrays, plan, np.zeros((height, width, 3), np.float32), mode))
        img = forward(*arrays, plan, np.zeros((height, width, 3)), mode)
        ctx.save_for_backward(means, scales, rotations, colors, opacities)
        ctx.state = (conic, plan, img, mode)
        return _tensor(img, colors.dtype)  # a copy: img must survive in-place edits of the output

    @staticmethod
    def backward(ctx, grad_img):  # grad_img [H, W, 3]
        means, scales, rotations, colors, opacities = ctx.saved_tensors
        conic, plan, img, mode = ctx.state
        arrays = (_numpy(means), conic, _numpy(colors), _numpy(opacities))
        grads = torch.from_numpy(backward(*arrays, plan, img, _numpy(grad_img), mode))  # [N, 9]
        g_scales, g_rot = _conic_chain(grads[:, 2:5], scales.detach().double(), rotations.detach().double())
        return (grads[:, 0:2].to(means.dtype), g_scales.to(scales.dtype), g_rot.to(rotations.dtype),
                grads[:, 5:8].to(colors.dtype), grads[:, 8].to(opacities.dtype), None, None, None)


def _conic_chain(
    g_conic: Tensor,  # [N, 3] dL/d(a, b, c)
    scales: Tensor,  # [N, 2] float64
    rotations: Tensor,  # [N] float64
) -> tuple[Tensor, Tensor]:  # ([N, 2] dL/dscales, [N] dL/drotations)
    """Chain rule through ``geometry.conics``: a = cos^2 i1 + sin^2 i2, b = cos sin (i1 - i2),
    c = sin^2 i1 + cos^2 i2 with i = scale^-2."""
    ga, gb, gc = g_conic.unbind(1)
    cos, sin = torch.cos(rotations), torch.sin(rotations)
    inv1, inv2 = scales[:, 0].pow(-2), scales[:, 1].pow(-2)
    g_inv1 = ga * cos * cos + gb * cos * sin + gc * sin * sin
    g_inv2 = ga * sin * sin - gb * cos * sin + gc * cos * cos
    g_scales = torch.stack([g_inv1, g_inv2], 1) * -2 * scales.pow(-3)
    g_rot = (inv1 - inv2) * (2 * cos * sin * (gc - ga) + (cos * cos - sin * sin) * gb)
    return g_scales, g_rot


def render_cpu(
    means: Tensor,  # [N, 2] (x, y) in pixels
    scales: Tensor,  # [N, 2] standard deviations, pixels, > 0
    rotations: Tensor,  # [N] radians
    colors: Tensor,  # [N, 3]
    opacities: Tensor,  # [N] in [0, 1]
    height: int,
    width: int,
    mode: str = "alpha",
) -> Tensor:  # [H, W, 3], dtype of ``colors``
    """Numba tile renderer; same output and gradients as ``render_reference``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return _RenderCPU.apply(means, scales, rotations, colors, opacities, height, width, mode)
