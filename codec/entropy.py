"""Entropy coding: a bit packer for side information and constriction range coding of symbols.

Symbol models are static histograms whose integer counts travel in the side information, so the decoder
rebuilds bit-identical probability tables (float64 division of the same integers, then constriction's
own deterministic quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np
from numba import njit

from codec.errors import BitstreamError


class BitWriter:
    def __init__(self) -> None:
        self._bits: list[int] = []

    def write(self, value: int, width: int) -> None:
        if not 0 <= value < (1 << width):
            raise ValueError(f"{value} does not fit in {width} bits")
        self._bits.extend((value >> shift) & 1 for shift in range(width - 1, -1, -1))

    def write_array(self, values: np.ndarray, width: int) -> None:
        for value in np.asarray(values, dtype=np.int64).ravel():
            self.write(int(value), width)

    def write_gamma(self, value: int) -> None:
        """Elias gamma code of value >= 1: 2*floor(log2 v) + 1 bits."""
        width = int(value).bit_length()
        self.write(0, width - 1)
        self.write(value, width)

    def getvalue(self) -> bytes:
        padded = self._bits + [0] * (-len(self._bits) % 8)
        return np.packbits(np.array(padded, dtype=np.uint8)).tobytes()

    def __len__(self) -> int:
        return len(self._bits)


class BitReader:
    """Reads what BitWriter wrote; running past the end raises BitstreamError naming ``field``."""

    def __init__(self, data: bytes, field: str) -> None:
        self._bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self._pos = 0
        self.field = field

    def read(self, width: int) -> int:
        if self._pos + width > len(self._bits):
            raise BitstreamError(self.field, "ends before all fields were read")
        value = 0
        for bit in self._bits[self._pos:self._pos + width]:
            value = (value << 1) | int(bit)
        self._pos += width
        return value

    def read_array(self, count: int, width: int) -> np.ndarray:
        if self._pos + count * width > len(self._bits):
            raise BitstreamError(self.field, "ends before all fields were read")
        bits = self._bits[self._pos:self._pos + count * width].reshape(count, width).astype(np.int64)
        self._pos += count * width
        return bits @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64)) if width else np.zeros(count, np.int64)

    def read_gamma(self, limit: int) -> int:
        return int(self.read_gammas(1, limit)[0])

    def read_gammas(self, count: int, limit: int) -> np.ndarray:
        """``count`` Elias gamma codes, each at most ``limit``."""
        values, pos = _read_gammas(self._bits, self._pos, count, limit, limit.bit_length())
        if pos == -1:
            raise BitstreamError(self.field, "ends before all fields were read")
        if pos == -2:
            raise BitstreamError(self.field, f"a count exceeds {limit}")
        self._pos = pos
        return values

    def remaining_bits(self) -> int:
        return len(self._bits) - self._pos


@njit(cache=True)
def _read_gammas(bits, pos, count, limit, max_zeros):  # ([count] values, next position; -1 past the end, -2 too big)
    # Compiled: a histogram is thousands of codes, and a file must not buy seconds of bit-by-bit Python.
    values = np.zeros(count, np.int64)
    for i in range(count):
        zeros = 0
        while pos < len(bits) and bits[pos] == 0:
            zeros += 1
            pos += 1
            if zeros > max_zeros:
                return values, -2
        if pos + zeros + 1 > len(bits):
            return values, -1
        value = 0
        for k in range(zeros + 1):
            value = (value << 1) | bits[pos + k]
        pos += zeros + 1
        if value > limit:
            return values, -2
        values[i] = value
    return values, pos


def write_histogram(writer: BitWriter, symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Write the counts of ``symbols`` over ``alphabet`` (gamma of count + 1); return them."""
    counts = np.bincount(symbols, minlength=alphabet)
    for count in counts:
        writer.write_gamma(int(count) + 1)
    return counts


def read_histogram(reader: BitReader, alphabet: int, total: int) -> np.ndarray:
    """Read counts written by ``write_histogram``; they must add up to ``total`` symbols."""
    counts = reader.read_gammas(alphabet, total + 1) - 1
    if counts.sum() != total:
        raise BitstreamError(reader.field, f"histogram counts add up to {counts.sum()}, expected {total}")
    return counts


@dataclass(frozen=True)
class Constant:
    """The model of a symbol stream that only ever holds ``symbol``: it costs no payload bits."""

    symbol: int


def categorical(counts: np.ndarray):
    """The model both sides build from the same integer counts (zero-count symbols get no mass)."""
    used = counts > 0
    # constriction cannot build a one-symbol distribution, and it would carry nothing; no symbol at all (an
    # empty file's histograms) is decoded zero times, so any constant will do.
    if used.sum() <= 1:
        return Constant(int(np.argmax(used)))
    probabilities = np.where(used, counts, 0).astype(np.float64) / max(int(counts.sum()), 1)
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def uniform(bits: int):
    """The model of a symbol spread evenly over 2^bits values (no side information needed)."""
    return constriction.stream.model.Uniform(1 << bits)


def information_bits(counts: np.ndarray) -> float:
    """The fewest bits any coder can spend on symbols with these counts: their count times their entropy."""
    used = counts[counts > 0].astype(np.float64)
    return float((used * np.log2(used.sum() / used)).sum()) if len(used) else 0.0


def symbol_bits(symbols: np.ndarray) -> float:  # [N] any integers
    """``information_bits`` of the symbols under their own histogram (what a coder fitted to them spends)."""
    return information_bits(np.unique(np.asarray(symbols), return_counts=True)[1])


def encode_symbols(streams) -> bytes:
    """The payload of (symbols, model) streams coded one after another."""
    encoder = SymbolEncoder()
    for symbols, model in streams:
        encoder.encode(symbols, model)
    return encoder.getvalue()


class SymbolEncoder:
    def __init__(self) -> None:
        self._encoder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, model) -> None:
        if len(symbols) and not isinstance(model, Constant):
            self._encoder.encode(np.ascontiguousarray(symbols, dtype=np.int32), model)

    def getvalue(self) -> bytes:
        return self._encoder.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Range decoder over the payload; any failure inside constriction becomes a BitstreamError."""

    def __init__(self, payload: bytes) -> None:
        if len(payload) % 4:
            raise BitstreamError("payload_length", f"{len(payload)} is not a multiple of 4")
        self._decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))

    def decode(self, model, count: int, field: str) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if isinstance(model, Constant):
            return np.full(count, model.symbol, dtype=np.int64)
        try:
            return np.asarray(self._decoder.decode(model, count), dtype=np.int64)
        except Exception as exc:  # constriction raises plain errors on garbage input
            raise BitstreamError(field, f"range decoding failed: {exc}") from exc
