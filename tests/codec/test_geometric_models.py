"""Two-sided geometric models (format version 3): integer tables, the fit, the writer's choice, the reader's
checks. Whole version 3 files are tested with the other versions in test_bitstream_errors.py."""

from __future__ import annotations

import numpy as np
import pytest

from codec.format.entropy import RATE_BITS, BitReader, BitWriter, Geometric, SymbolDecoder, SymbolEncoder
from codec.format.entropy import histogram_side_bits, information_bits, read_model, write_model
from codec.errors import BitstreamError


def _peaked(n: int, alphabet: int, seed: int = 0, centre: int = 40, spread: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(centre + np.round(rng.laplace(0, spread, n)), 0, alphabet - 1).astype(np.int64)


def test_weights_are_the_integer_recurrence():
    # Known answer: each step multiplies by rate / 2^12 and floors, on both sides, then the floor of 2^12.
    weights = Geometric(mode=2, left=2048, right=1024).weights(6)
    top = 1 << 32
    assert weights.tolist() == [top // 4, top // 2, top, top // 4, top // 16, top // 64]
    assert Geometric(mode=0, left=0, right=0).weights(3).tolist() == [top, 1 << 12, 1 << 12]


def test_fit_finds_the_spread_and_costs_near_the_entropy():
    symbols = _peaked(2000, 128)
    counts = np.bincount(symbols, minlength=128)
    model, bits = Geometric.fit(counts)
    assert abs(model.mode - 40) <= 1
    assert model.bits(counts) == pytest.approx(bits)
    # Within 3% of the symbols' own entropy: the shape is right, and it needs ~31 bits, not a histogram.
    assert information_bits(counts) <= bits < 1.03 * information_bits(counts)
    assert bits + 31 < information_bits(counts) + histogram_side_bits(counts)


@pytest.mark.parametrize("peaked", [True, False])
def test_write_and_read_model_round_trip_and_choose_the_cheaper(peaked):
    rng = np.random.default_rng(1)
    # Two far-apart modes: no single peak fits them, and their histogram is cheap
    symbols = _peaked(500, 128, seed=2) if peaked else rng.choice([10, 100], 500)
    side = BitWriter()
    model = write_model(side, symbols, 128, parametric=True)
    # The choice bit: the geometric model wins on a peak, the histogram on two
    assert BitReader(side.getvalue(), "side").read(1) == int(peaked)
    encoder = SymbolEncoder()
    encoder.encode(symbols, model)
    read, read_counts, fewest = read_model(BitReader(side.getvalue(), "side"), 128, 500, parametric=True)
    assert (read_counts is None) == peaked
    assert np.array_equal(SymbolDecoder(encoder.getvalue()).decode(read, 500, "x"), symbols)
    assert fewest <= len(encoder.getvalue()) * 8 + 64


def test_a_mode_outside_the_alphabet_is_a_bitstream_error():
    side = BitWriter()
    side.write(1, 1)  # geometric
    side.write(100, 7)  # mode 100 of 100 symbols: the field has room for 127
    side.write(7, RATE_BITS)
    side.write(7, RATE_BITS)
    with pytest.raises(BitstreamError, match="mode 100"):
        read_model(BitReader(side.getvalue(), "side_info"), 100, 10, parametric=True)
