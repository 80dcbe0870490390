"""Bottom layer: rendering 2D Gaussians to images. Depends on numpy and numba, and torch / triton for tensors.

``render`` validates its arguments and dispatches:
* CUDA tensors -> Triton tile kernels (``kernels.triton_blend``),
* CPU tensors  -> the numba tile kernels (``kernels.cpu``), or the pure-PyTorch reference
  (``kernels.reference``) when ``backend="reference"``. The reference is the oracle of both.
A decode renders numpy arrays with ``kernels.numba_tiles.render_numpy`` instead, without torch: importing this
package, ``kernels.geometry`` or ``kernels.numba_tiles`` loads no torch; each backend is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernels.geometry import ALPHA_MAX, CUTOFF_MAHALANOBIS_SQ, MODES
from kernels.host_memory import keep_freed_memory
from kernels.pair_bound import PairBound

if TYPE_CHECKING:
    from torch import Tensor

BACKENDS = ("auto", "reference", "cpu", "triton")

__all__ = ["ALPHA_MAX", "BACKENDS", "CUTOFF_MAHALANOBIS_SQ", "MODES", "PairBound", "keep_freed_memory", "render"]


def render(
    means: Tensor,  # [N, 2] (x, y) in pixels; pixel (i, j) has its centre at (j + 0.5, i + 0.5)
    scales: Tensor,  # [N, 2] standard deviations along the rotated axes, pixels, > 0
    rotations: Tensor,  # [N] radians
    colors: Tensor,  # [N, 3]
    opacities: Tensor,  # [N] in [0, 1]
    height: int,
    width: int,
    mode: str = "alpha",
    backend: str = "auto",
    pair_bound: PairBound | None = None,  # Triton only: binning sized without a read back (kernels.pair_bound);
    # the CPU renderers bin in host memory, where knowing the count costs nothing
) -> Tensor:  # [H, W, 3]
    """Render N Gaussians into an H x W RGB image; differentiable in every tensor argument."""
    _validate(means, scales, rotations, colors, opacities, height, width, mode, backend)
    if backend == "auto":
        backend = "triton" if means.is_cuda else "cpu"
    if backend == "reference":
        from kernels.reference import render_reference

        return render_reference(means, scales, rotations, colors, opacities, height, width, mode)
    if backend == "cpu":
        from kernels.cpu import render_cpu

        return render_cpu(means, scales, rotations, colors, opacities, height, width, mode)
    from kernels.triton_blend import render_triton

    return render_triton(means, scales, rotations, colors, opacities, height, width, mode, pair_bound)


def _validate(means, scales, rotations, colors, opacities, height, width, mode, backend) -> None:
    n = means.shape[0] if means.dim() == 2 else -1
    expected = {"means": (means, (n, 2)), "scales": (scales, (n, 2)), "rotations": (rotations, (n,)),
                "colors": (colors, (n, 3)), "opacities": (opacities, (n,))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (N from means), got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
        if tensor.device != means.device:
            raise ValueError(f"{name} is on {tensor.device}, means on {means.device}")
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise ValueError(f"height and width must be positive ints, got {height!r} x {width!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton" and not means.is_cuda:
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
