"""The decode's torch-free renderer (kernels.numba_tiles.render_numpy) and the geometry it shares with the
torch renderers (kernels.geometry), against the pure-PyTorch oracle (kernels.reference)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kernels.cpu import render_cpu
from kernels.geometry import conics, pixel_boxes
from kernels.numba_tiles import render_numpy
from kernels.reference import render_reference
from tests.kernels.test_cpu import scene

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mode", ["alpha", "sum"])
def test_render_numpy_is_the_cpu_kernel_and_matches_the_reference(mode):
    params = scene(300, 70, 150, seed=4)
    image = render_numpy(*(p.numpy() for p in params), 70, 150, mode)
    assert image.dtype == np.float32 and image.shape == (70, 150, 3)
    with torch.no_grad():  # the same tiles behind the autograd wrapper: the very same pixels
        assert np.array_equal(image, render_cpu(*params, 70, 150, mode).numpy())
    reference = render_reference(*(p.double() for p in params), 70, 150, mode)
    torch.testing.assert_close(torch.from_numpy(image).double(), reference, rtol=0, atol=1e-5)


def test_geometry_gives_numpy_what_it_gives_torch():
    means, scales, rotations = scene(500, 40, 60, seed=5)[:3]
    means[:3] = torch.tensor([[float("nan"), 1.0], [float("inf"), 2.0], [1e30, -1e30]])  # not finite too
    boxes = pixel_boxes(means.numpy(), scales.numpy(), rotations.numpy(), 40, 60)
    assert boxes.dtype == np.int64
    assert np.array_equal(boxes, pixel_boxes(means, scales, rotations, 40, 60).numpy())
    for ours, theirs in zip(conics(scales.double().numpy(), rotations.double().numpy()),
                            conics(scales.double(), rotations.double())):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-14, atol=0)


def test_the_numpy_renderer_loads_no_torch():
    code = "import sys, kernels, kernels.numba_tiles; print('torch' in sys.modules)"
    child = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert child.stdout.strip() == "False", child.stderr
