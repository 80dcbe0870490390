"""Entropy coding: a bit packer for side information and constriction range coding of symbols.

Symbol models are static and travel in the side information as integers, so the decoder rebuilds
bit-identical probability tables (float64 division of the same integers, then constriction's own
deterministic quantisation): a histogram of the symbols' counts, or (version 3) a two-sided geometric
distribution of three integers, which costs 31 to 34 bits where a histogram of 2^7 counts cost about 600.
"""

from __future__ import annotations

import math
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
        """Elias gamma code of value >= 1: ``gamma_bits(value)`` bits."""
        width = int(value).bit_length()
        self.write(0, width - 1)
        self.write(value, width)

    def getvalue(self) -> bytes:
        padded = self._bits + [0] * (-len(self._bits) % 8)
        return np.packbits(np.array(padded, dtype=np.uint8)).tobytes()

    def __len__(self) -> int:
        return len(self._bits)


def gamma_bits(value: int) -> int:  # length of the Elias gamma code of value >= 1: 2 floor(log2 v) + 1
    return 2 * int(value).bit_length() - 1


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


# Two-sided geometric: weight TOP at the mode, times left / 2^RATE_BITS per symbol below it and right /
# 2^RATE_BITS per symbol above, never under FLOOR (so any symbol can be coded, at no more than ~20 bits plus
# the log of the spread). Integer arithmetic only: every platform builds the same table, where exp() and
# pow() may differ in the last bit between C libraries and a single flipped probability breaks a decode.
RATE_BITS = 12
_TOP, _FLOOR = 1 << 32, 1 << 12
_FIT_SCALES = 2.0 ** np.linspace(-2.5, 12, 48)  # symbols: the spreads the writer tries on each side
_FIT_RATES = np.unique(np.clip(np.round(np.exp(-1 / _FIT_SCALES) * (1 << RATE_BITS)), 0, (1 << RATE_BITS) - 1))
_FIT_MODES = 4  # the most frequent symbols tried as the mode


@dataclass(frozen=True)
class Geometric:
    """A unimodal model of a column's symbols from three integers (format version 3)."""

    mode: int
    left: int  # decay per symbol below the mode, in 1 / 2^RATE_BITS
    right: int  # decay per symbol above it

    def weights(self, alphabet: int) -> np.ndarray:  # [alphabet] int64, all >= _FLOOR
        weights = np.empty(alphabet, np.int64)
        weights[self.mode] = _TOP
        for k in range(self.mode + 1, alphabet):
            weights[k] = (weights[k - 1] * self.right) >> RATE_BITS
        for k in range(self.mode - 1, -1, -1):
            weights[k] = (weights[k + 1] * self.left) >> RATE_BITS
        return np.maximum(weights, _FLOOR)

    @staticmethod
    def fit(counts: np.ndarray) -> tuple["Geometric", float]:  # [alphabet] -> (best found, its bits)
        """The lowest-cost model over a grid of spreads and the most frequent modes, in floating point
        (the writer alone runs this; the cost it reports is that of the exact integer table)."""
        offset, total = np.arange(len(counts)), counts.sum()
        log_rates = np.log(np.maximum(_FIT_RATES, 1) / (1 << RATE_BITS))[:, None]  # [R, 1]
        log_floor = math.log(_FLOOR / _TOP)
        best, best_bits = None, math.inf
        for mode in np.argsort(-counts, kind="stable")[:_FIT_MODES]:
            # Each symbol lies on one side of the mode, so each side's weights depend on its own rate only:
            # ln weight [R, alphabet] per side, the mode's own weight 1.
            below = np.where(offset < mode, np.maximum((mode - offset) * log_rates, log_floor), -np.inf)
            above = np.where(offset > mode, np.maximum((offset - mode) * log_rates, log_floor), -np.inf)
            z = 1 + np.exp(below).sum(1)[:, None] + np.exp(above).sum(1)[None]  # [R, R] the normaliser
            gained = (np.where(np.isfinite(below), below, 0) * counts).sum(1)[:, None] \
                + (np.where(np.isfinite(above), above, 0) * counts).sum(1)[None]  # [R, R] sum of ln weights
            bits = (total * np.log(z) - gained) / math.log(2)
            i, j = np.unravel_index(np.argmin(bits), bits.shape)
            if bits[i, j] < best_bits:
                best, best_bits = Geometric(int(mode), int(_FIT_RATES[i]), int(_FIT_RATES[j])), bits[i, j]
        return best, best.bits(counts)

    def bits(self, counts: np.ndarray) -> float:  # [alphabet] counts -> bits of those symbols under this model
        weights = self.weights(len(counts))
        return float((counts * np.log2(weights.sum() / weights)).sum())


def mode_width(alphabet: int) -> int:  # bits of a geometric model's mode field
    return (alphabet - 1).bit_length()


def geometric_side_bits(alphabet: int) -> int:
    return mode_width(alphabet) + 2 * RATE_BITS


def histogram_side_bits(counts: np.ndarray) -> int:  # what write_histogram writes for these counts
    return sum(gamma_bits(int(c) + 1) for c in counts)


def write_model(writer: BitWriter, symbols: np.ndarray, alphabet: int, parametric: bool):
    """Write the side information of one stream's model and return the model: its histogram, or with
    ``parametric`` whichever of histogram and geometric (after a 1-bit choice) costs fewer bits in all.
    A geometric model's weights make a categorical model just as counts do."""
    counts = np.bincount(symbols, minlength=alphabet)
    if parametric:
        geometric, _ = _cheaper(counts)
        writer.write(int(geometric is not None), 1)
        if geometric is not None:
            return write_geometric(writer, geometric, alphabet)
    write_histogram(writer, symbols, alphabet)
    return categorical(counts)


def model_bits(counts: np.ndarray, parametric: bool) -> float:
    """What ``write_model`` spends on symbols with these counts, side information and payload (estimated at
    their information content)."""
    if not parametric:
        return information_bits(counts) + histogram_side_bits(counts)
    return 1 + _cheaper(counts)[1]


def _cheaper(counts: np.ndarray) -> tuple[Geometric | None, float]:
    """The geometric model when it costs fewer bits in all than the histogram (else None), and that cost."""
    histogram = information_bits(counts) + histogram_side_bits(counts)
    geometric, geometric_bits = Geometric.fit(counts)
    geometric_bits += geometric_side_bits(len(counts))
    return (geometric, geometric_bits) if geometric_bits < histogram else (None, histogram)


def write_geometric(writer: BitWriter, geometric: Geometric, alphabet: int):
    writer.write(geometric.mode, mode_width(alphabet))
    writer.write(geometric.left, RATE_BITS)
    writer.write(geometric.right, RATE_BITS)
    return categorical(geometric.weights(alphabet))


def read_model(reader: BitReader, alphabet: int, total: int, parametric: bool):
    """What ``write_model`` wrote: (model, counts or None, the fewest bits ``total`` symbols can take)."""
    if parametric and reader.read(1):
        model, least = read_geometric(reader, alphabet)
        return model, None, total * least
    counts = read_histogram(reader, alphabet, total)
    return categorical(counts), counts, information_bits(counts)


def read_geometric(reader: BitReader, alphabet: int):
    """What ``write_geometric`` wrote: (model, the fewest bits one symbol can take under it)."""
    mode = reader.read(mode_width(alphabet))
    if mode >= alphabet:
        raise BitstreamError(reader.field, f"a geometric model's mode {mode} is outside its {alphabet} symbols")
    weights = Geometric(mode, reader.read(RATE_BITS), reader.read(RATE_BITS)).weights(alphabet)
    return categorical(weights), float(np.log2(weights.sum() / weights.max()))  # none costs less than the mode


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


def read_payload(payload: bytes, columns, counts, what: str, field: str = "payload") -> list[np.ndarray]:
    """Decode ``counts[i]`` symbols of each column (``codec.format.streams.Coded``: field, model, counts,
    fewest_bits; a count may be a function of the columns decoded before it, for a context model), holding the
    payload to them: no symbol may come from past its end, no word may follow the last one, and each histogram
    must be the one of its symbols. The decode work is bounded by the bytes
    present: the counts are checked against the fewest bits their columns can take first. ``what`` names the
    symbols in a failure, ``field`` the section."""
    fewest = sum(column.fewest_bits for column in columns)
    # A range coder cannot beat the information content by more than its 64-bit state.
    if len(payload) * 8 + 64 < fewest:
        raise BitstreamError(f"{field}_length", f"{len(payload)} bytes cannot hold {what} "
                                                f"(at least {fewest / 8:.0f} bytes)")
    decoder = SymbolDecoder(payload)
    decoded: list[np.ndarray] = []
    for column, count in zip(columns, counts):
        decoded.append(decoder.decode(column.model, count(decoded) if callable(count) else count, column.field))
    for column, symbols in zip(columns, decoded):
        histogram = column.counts
        if histogram is not None and not np.array_equal(np.bincount(symbols, minlength=len(histogram)), histogram):
            raise BitstreamError(column.field, "the decoded symbols do not match their histogram")
    # The encoder is deterministic, so a payload that is exactly what it writes for these symbols was read
    # through, word for word; anything else was cut short, padded or tampered with.
    try:
        expected = encode_symbols((symbols, column.model) for symbols, column in zip(decoded, columns))
    except Exception as exc:  # constriction refuses a symbol its model gives no mass
        raise BitstreamError(field, f"a decoded symbol cannot be coded: {exc}") from exc
    if len(expected) > len(payload):
        raise BitstreamError(field, f"ends {len(expected) - len(payload)} bytes before its {what}")
    if len(expected) < len(payload):
        raise BitstreamError(field, f"{len(payload) - len(expected)} bytes follow the last symbol")
    if expected != payload:
        raise BitstreamError(field, "is not the range coding of the symbols it decodes to")
    return decoded
