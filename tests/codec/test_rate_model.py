"""The rate term counts exactly what the coder's histograms cost, for values on the grid."""

import numpy as np
import torch

from codec.entropy import information_bits
from codec.quantize import fake_quantize
from codec.quantized import quantize_uniform
from codec.rate_model import column_bits


def test_on_the_grid_the_count_is_the_histograms_entropy():
    values = torch.randn(400, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.3])
    ranges = torch.stack([values.min(0).values, values.max(0).values], 1)
    symbols = quantize_uniform(values.numpy(), ranges.numpy(), 5)
    exact = sum(information_bits(np.bincount(column)) for column in symbols.T)
    assert abs(float(column_bits(fake_quantize(values, ranges, 5), ranges, 5)) - exact) < 1e-3 * exact
    soft = float(column_bits(values, ranges, 5))  # off the grid: within a few percent
    assert abs(soft - exact) < 0.03 * exact


def test_moving_a_value_to_a_crowded_symbol_lowers_the_count():
    values = torch.tensor([[0.0], [0.0], [0.0], [0.9], [3.0]], requires_grad=True)
    ranges = torch.tensor([[0.0, 3.0]])
    column_bits(values, ranges, 2).backward()
    assert values.grad[3, 0] > 0  # the value between symbols 0 and 1 is pulled toward the three at 0
