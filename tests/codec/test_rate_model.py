"""The rate term counts exactly what the coder's histograms cost, for values on the grid."""

import dataclasses

import numpy as np
import torch

import codec
from codec.format.bitstream import read_bitstream, write_bitstream
from codec.format.entropy import information_bits
from codec.train.quantise import fake_quantize
from codec.format.values import quantize_uniform
from codec.train.rate_model import column_bits


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


def test_counted_like_this_a_real_file_is_its_histogram_payload(encoded):
    """The per-Gaussian columns counted by ``column_bits`` plus the positions' entropy: within 3 % of the
    payload the range coder writes under histograms (the file's version 2 twin). The file itself (version
    3) may code a column under a geometric model instead, whose payload is larger than the entropy but whose
    side information is so much smaller that the file is smaller."""
    header = codec.inspect(encoded.data)
    q = read_bitstream(encoded.data)
    assert header.shape_per_gaussian and header.color_per_gaussian and header.parametric_models
    twin = codec.inspect(write_bitstream(dataclasses.replace(q, layout=dataclasses.replace(
        q.layout, parametric_models=False))))
    count = information_bits(np.bincount(np.diff(q.y, prepend=0))) + len(q) * header.position_bits
    for symbols, bits in ((q.shape_codebook, header.shape_bits), (q.color_codebook, header.color_bits)):
        grid = torch.tensor([[0.0, 2.0**bits - 1]] * symbols.shape[1])
        count += float(column_bits(torch.as_tensor(symbols, dtype=torch.float32), grid, bits))
    assert abs(count - 8 * twin.payload_length) <= 0.03 * 8 * twin.payload_length
    assert header.payload_length >= twin.payload_length
    assert header.side_length + header.payload_length < twin.side_length + twin.payload_length
