"""K-means, uniform quantisation (paper eq. 7-8) and entropy coding units."""

import numpy as np
import pytest
import torch

from codec.format.entropy import BitReader, BitWriter, SymbolDecoder, SymbolEncoder, categorical, read_histogram
from codec.format.entropy import uniform, write_histogram
from codec.errors import BitstreamError
from codec.train.quantise import fake_quantize, kmeans
from codec.format.values import dequantize_uniform, grid_steps, quantize_uniform
from codec.train.quantise import half_range


def test_kmeans_finds_separated_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(200, 2, generator=generator)
    centroids, assign = kmeans(points, 4, generator=generator)
    assert torch.cdist(centres, centroids).min(dim=1).values.max() < 0.1
    assert torch.equal(assign, torch.cdist(points, centroids).argmin(1))
    assert len(torch.unique(assign)) == 4


def test_kmeans_keeps_every_entry_in_use():
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(300, 4, generator=generator)
    centroids, assign = kmeans(points, 64, generator=generator)
    assert centroids.shape == (64, 4)
    assert len(torch.unique(assign)) == 64


@pytest.mark.parametrize("bits", [2, 6, 8, 12])
def test_quantisation_error_is_at_most_half_a_step(bits):
    rng = np.random.default_rng(bits)
    values = (rng.normal(size=(500, 3)) * [1.0, 5.0, 0.01]).astype(np.float32)
    ranges = half_range(torch.from_numpy(values)).numpy()
    assert (ranges[:, 0] <= values.min(0)).all() and (ranges[:, 1] >= values.max(0)).all()
    assert np.array_equal(ranges, ranges.astype(np.float16).astype(np.float32))
    symbols = quantize_uniform(values, ranges, bits)
    assert symbols.min() >= 0 and symbols.max() <= 2**bits - 1
    step = (ranges[:, 1] - ranges[:, 0]) / (2**bits - 1)
    error = np.abs(dequantize_uniform(symbols, ranges, bits) - values)
    assert (error <= step / 2 * (1 + 1e-4) + 1e-6).all()


def test_fake_quantize_matches_the_decoder_and_passes_gradients():
    rng = np.random.default_rng(0)
    values = rng.uniform(-2, 3, size=(100, 2)).astype(np.float32)
    tensor = torch.tensor(values, requires_grad=True)
    ranges = half_range(tensor)
    snapped = fake_quantize(tensor, ranges, 6)
    ranges = ranges.numpy()
    decoded = dequantize_uniform(quantize_uniform(values, ranges, 6), ranges, 6)
    np.testing.assert_allclose(snapped.detach().numpy(), decoded, atol=1e-5)
    snapped.sum().backward()
    assert torch.equal(tensor.grad, torch.ones_like(tensor))


def _numpy_half_range(values: np.ndarray) -> np.ndarray:  # the host formula the encoder used before issue 18
    lo = values.min(axis=0).astype(np.float64)
    hi = values.max(axis=0).astype(np.float64)
    with np.errstate(over="ignore"):  # beyond 65504 rounds, and steps, to inf, as intended
        lo16, hi16 = lo.astype(np.float16), hi.astype(np.float16)
        lo16 = np.where(lo16.astype(np.float64) > lo, np.nextafter(lo16, np.float16(-np.inf)), lo16)
        hi16 = np.where(hi16.astype(np.float64) < hi, np.nextafter(hi16, np.float16(np.inf)), hi16)
    return np.stack([lo16, hi16], axis=1).astype(np.float32)


def _float16_edges() -> np.ndarray:  # [P] float32: every finite float16, the midpoints, a float32 ulp either side
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    halves = np.unique(halves[np.isfinite(halves)].astype(np.float32))
    mids = (halves[:-1] + halves[1:]) / 2  # exact in float32: the ties of float16 rounding
    points = np.concatenate([halves, mids, [65505.0, 65519.0, 65520.0, 7e4, 1e-9, 3e-8, 1e-30]])
    points = np.concatenate([points, -points])
    return np.concatenate([points, np.nextafter(points, np.float32(np.inf)),
                           np.nextafter(points, np.float32(-np.inf))]).astype(np.float32)


def test_half_range_on_the_device_is_bit_identical_to_numpy():
    """Every float16 rounding case (ties to even, zeros of both signs, subnormals, overflow to inf): each
    value as a column's min and max, then random columns; compared bit for bit."""
    edges = _float16_edges()[None, :]  # [1, P]: each point is its column's min and max
    rng = np.random.default_rng(7)
    spread = (rng.normal(size=(300, 64)) * np.logspace(-9, 5, 64)).astype(np.float32)
    for values in (edges, spread, np.concatenate([edges, edges[:, ::-1]])):
        got = half_range(torch.from_numpy(values)).numpy()
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.int32), _numpy_half_range(values).view(np.int32))


def test_fake_quantize_steps_match_the_host_grid():
    """The device step (float64 span, rounded once) is the host's ``grid_steps``, so training snaps
    to exactly the grid the file is written on."""
    rng = np.random.default_rng(3)
    values = rng.uniform(-4, 5, size=(400, 4)).astype(np.float32)
    ranges = half_range(torch.from_numpy(values))
    for bits in (3, 6, 10):
        snapped = fake_quantize(torch.from_numpy(values), ranges, bits).numpy()
        host = ranges.numpy()
        step = torch.as_tensor(grid_steps(host, bits), dtype=torch.float32).numpy()
        lo = host[:, 0]
        expected = np.clip(np.round((values - lo) / step), 0, 2**bits - 1) * step + lo
        np.testing.assert_array_equal(snapped, values + (expected - values))


def test_bit_writer_reader_roundtrip():
    writer = BitWriter()
    writer.write(5, 3)
    writer.write_gamma(1)
    writer.write_gamma(1000)
    writer.write_array(np.array([0, 255, 17]), 8)
    reader = BitReader(writer.getvalue(), "side")
    assert reader.read(3) == 5
    assert reader.read_gamma(10_000) == 1
    assert reader.read_gamma(10_000) == 1000
    assert reader.read_array(3, 8).tolist() == [0, 255, 17]
    with pytest.raises(BitstreamError, match="side"):
        reader.read(16)


def test_gamma_over_limit_is_a_bitstream_error():
    writer = BitWriter()
    writer.write_gamma(70_000)
    with pytest.raises(BitstreamError):
        BitReader(writer.getvalue(), "side").read_gamma(1000)


def test_range_coding_roundtrip_is_exact_and_near_entropy():
    rng = np.random.default_rng(0)
    symbols = rng.choice(16, size=5000, p=np.r_[0.5, np.full(15, 0.5 / 15)])
    positions = rng.integers(0, 1024, size=5000)
    side = BitWriter()
    counts = write_histogram(side, symbols, 16)
    encoder = SymbolEncoder()
    encoder.encode(symbols, categorical(counts))
    encoder.encode(positions, uniform(10))
    payload = encoder.getvalue()
    reader = BitReader(side.getvalue(), "side")
    decoder = SymbolDecoder(payload)
    model = categorical(read_histogram(reader, 16, 5000))
    assert np.array_equal(decoder.decode(model, 5000, "a"), symbols)
    assert np.array_equal(decoder.decode(uniform(10), 5000, "b"), positions)
    entropy = -(counts[counts > 0] * np.log2(counts[counts > 0] / 5000)).sum() + 5000 * 10
    assert len(payload) * 8 < entropy * 1.01 + 64


def test_histogram_must_add_up():
    side = BitWriter()
    write_histogram(side, np.array([0, 1, 1]), 2)
    with pytest.raises(BitstreamError, match="add up"):
        read_histogram(BitReader(side.getvalue(), "side"), 2, 4)


def test_single_symbol_stream_costs_nothing_and_roundtrips():
    counts = np.array([0, 0, 7, 0])
    encoder = SymbolEncoder()
    encoder.encode(np.full(7, 2), categorical(counts))
    payload = encoder.getvalue()
    assert len(payload) <= 4
    assert SymbolDecoder(payload).decode(categorical(counts), 7, "x").tolist() == [2] * 7
