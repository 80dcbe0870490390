"""The GPU path without a GPU (issue #29): a whole encode through the Triton kernels, run by Triton's interpreter
on CPU tensors (tests/conftest.py sets TRITON_INTERPRET=1), decoded by the CPU decoder and held to the same encode
through the numba kernels."""

import os

import numpy as np
import pytest

import codec
from codec.options import EncodeOptions

ITERATIONS = 40
BPP = 1.5  # enough for some dozens of Gaussians on a 48 x 32 crop, above the count's floor


# Slow: the interpreter runs the kernels in Python.
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="runs the Triton kernels in the interpreter")
@pytest.mark.parametrize("method", ["default", "paper"])
def test_an_encode_through_the_triton_kernels_matches_the_numba_one(crop, method):
    pixels = np.ascontiguousarray(crop[16:48, 24:72])  # [32, 48, 3]
    reports = {backend: codec.encode_with_report(pixels, options=EncodeOptions(
        bpp=BPP, method=method, iterations=ITERATIONS, seed=0, device="cpu", backend=backend))
        for backend in ("cpu", "triton")}
    numba, triton = reports["cpu"], reports["triton"]
    assert triton.n_gaussians == numba.n_gaussians > 16  # a count rate control chose, not the floor
    assert triton.bpp == pytest.approx(numba.bpp, rel=0.03)
    assert triton.psnr == pytest.approx(numba.psnr, abs=0.2)
    assert triton.psnr > 20  # a picture, not noise that merely matches
