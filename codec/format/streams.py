"""Every coded stream of a .gsi file, each described once (docs/bitstream.md).

A stream is one thing the file codes: the rows (or row gaps), the x positions, an attribute group's
per-Gaussian columns or its codebook index, a codebook's entries. Its object owns all of its coding: where
its values sit in ``QuantizedGaussians`` (``take`` / ``put``), its side information (``write`` / ``read``
and ``most_side_bits``, the longest a header's counts allow), the model of each of its payload columns, its
share of the rate plan (``plan_bits``) and its line of the bit report (``report_bits``). ``STREAMS`` lists
them in file order, and everything that handles a stream iterates it: ``codec.format.bitstream`` (write,
read, the side-length bound), ``codec.format.breakdown`` (``gsic info``), ``codec.train.rate`` (the plan);
``codec.train.rate_model`` counts a group's per-Gaussian columns on the grid its stream declares.

Adding a stream is one ``Stream`` subclass and its entry in ``STREAMS`` (plus the field of
``QuantizedGaussians`` its values live in, and a header flag if older files lack it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from codec.errors import BitstreamError
from codec.format.entropy import BitReader, BitWriter, gamma_bits, geometric_side_bits, read_model, symbol_bits
from codec.format.entropy import uniform, write_model
from codec.format.values import COLOR_COLUMNS, SHAPE_COLUMNS, QuantizedGaussians


class Coding(Protocol):
    """What a stream's coding depends on: a file's ``Header``, or the encoder's ``RatePlan``."""

    n_gaussians: int
    position_bits: int
    rows_sorted: bool
    shape_per_gaussian: bool
    color_per_gaussian: bool
    parametric_models: bool
    k_shape: int  # 0 when shapes are coded per Gaussian
    k_color: int
    shape_bits: int
    color_bits: int


@dataclass(frozen=True)
class Coded:
    """One payload column as the side information declares it."""

    field: str  # what a failure names: payload.<column>
    model: object  # what the range coder codes it under
    counts: np.ndarray | None  # [alphabet] the histogram its symbols must have; None under other models
    fewest_bits: float  # the fewest bits its N symbols can take


@dataclass(frozen=True)
class Read:
    """What a stream's side information declares."""

    columns: list[Coded]  # its payload columns, in payload order
    values: np.ndarray | None = None  # what the side information itself holds (a codebook's entries)


class Stream(ABC):
    """One coded stream. ``values`` are what it codes: [N] symbols, [N, D] for D columns, or a codebook."""

    key: str  # its entry in the values of a file's sections
    part: str  # its line in the bit report

    def present(self, c: Coding) -> bool:
        return True

    @abstractmethod
    def take(self, q: QuantizedGaussians) -> np.ndarray:
        """Its values, as the file codes them."""

    @abstractmethod
    def put(self, fields: dict[str, np.ndarray], values: np.ndarray, c: Coding) -> None:
        """Its decoded values into the ``QuantizedGaussians`` fields being built."""

    @abstractmethod
    def write(self, side: BitWriter, values: np.ndarray, c: Coding) -> list[tuple[np.ndarray, object]]:
        """Write its side information; return its payload columns, each with its model."""

    @abstractmethod
    def read(self, side: BitReader, c: Coding) -> Read:
        """Read what ``write`` wrote."""

    def join(self, columns: list[np.ndarray], c: Coding) -> np.ndarray:  # its decoded payload columns -> values
        return columns[0]

    def most_side_bits(self, c: Coding) -> int:  # the longest side information the counts allow it
        return 0

    def least_payload_bits(self, c: Coding) -> int:  # payload bits every file of these counts spends on it
        return 0

    @abstractmethod
    def plan_bits(self, c: Coding) -> tuple[float, float]:
        """The rate plan's model of its cost: (payload bits per Gaussian, side-information bits)."""

    @abstractmethod
    def report_bits(self, values: np.ndarray, c: Coding) -> float:
        """Its payload bits as the bit report estimates them (the payload is one range-coded stream)."""


def present(streams: tuple[Stream, ...], c: Coding) -> list[Stream]:
    return [stream for stream in streams if stream.present(c)]


def longest_model_bits(alphabet: int, c: Coding) -> int:
    """A histogram with every count at its longest code, or with parametric models the choice bit and the
    longer of that and a geometric model."""
    histogram = alphabet * gamma_bits(c.n_gaussians + 1)  # each count + 1 <= N + 1
    return 1 + max(histogram, geometric_side_bits(alphabet)) if c.parametric_models else histogram


class _Uniform(Stream):
    """A stream of position-grid symbols, each uniform over 2^position_bits: no side information."""

    field: str

    def write(self, side: BitWriter, values: np.ndarray, c: Coding) -> list[tuple[np.ndarray, object]]:
        return [(values, uniform(c.position_bits))]

    def read(self, side: BitReader, c: Coding) -> Read:
        return Read([Coded(self.field, uniform(c.position_bits), None, self.least_payload_bits(c))])

    def least_payload_bits(self, c: Coding) -> int:
        return c.n_gaussians * c.position_bits

    def plan_bits(self, c: Coding) -> tuple[float, float]:
        return c.position_bits, 0.0

    def report_bits(self, values: np.ndarray, c: Coding) -> float:
        return len(values) * c.position_bits


@dataclass(frozen=True)
class Rows(_Uniform):
    """Each Gaussian's grid row; with rows sorted, the gap to the previous row (the first from 0) under a
    model of the gaps, whose alphabet (the largest gap + 1) leads its side information."""

    key = "rows"
    part = "positions"
    field = "payload.rows"

    def take(self, q: QuantizedGaussians) -> np.ndarray:  # [N]
        rows = np.diff(q.y, prepend=0) if q.layout.rows_sorted else q.y
        if (rows < 0).any():
            raise ValueError("rows_sorted is set but the Gaussians are not sorted by row")
        return rows

    def put(self, fields: dict[str, np.ndarray], values: np.ndarray, c: Coding) -> None:
        y = np.cumsum(values) if c.rows_sorted else values
        if c.n_gaussians and y.max() >= (1 << c.position_bits):
            raise BitstreamError(self.field, "positions run past the grid")
        fields["y"] = y

    def write(self, side: BitWriter, values: np.ndarray, c: Coding) -> list[tuple[np.ndarray, object]]:
        if not c.rows_sorted:
            return super().write(side, values, c)
        alphabet = int(values.max()) + 1 if c.n_gaussians else 1
        side.write_gamma(alphabet)
        return [(values, write_model(side, values, alphabet, c.parametric_models))]

    def read(self, side: BitReader, c: Coding) -> Read:
        if not c.rows_sorted:
            return super().read(side, c)
        alphabet = side.read_gamma(1 << c.position_bits)
        return Read([Coded(self.field, *read_model(side, alphabet, c.n_gaussians, c.parametric_models))])

    def most_side_bits(self, c: Coding) -> int:  # the alphabet's gamma code and the model
        alphabet = 1 << c.position_bits
        return 2 * c.position_bits + 1 + longest_model_bits(alphabet, c) if c.rows_sorted else 0

    def least_payload_bits(self, c: Coding) -> int:
        return 0 if c.rows_sorted else super().least_payload_bits(c)

    def plan_bits(self, c: Coding) -> tuple[float, float]:
        if not c.rows_sorted:
            return super().plan_bits(c)
        mean_gap = (1 << c.position_bits) / c.n_gaussians  # gaps of sorted rows are about geometric
        return (1 + mean_gap) * math.log2(1 + mean_gap) - mean_gap * math.log2(mean_gap), 0.0

    def report_bits(self, values: np.ndarray, c: Coding) -> float:
        return symbol_bits(values) if c.rows_sorted else super().report_bits(values, c)


@dataclass(frozen=True)
class Columns(_Uniform):
    """Each Gaussian's grid column, uniform."""

    key = "x"
    part = "positions"
    field = "payload.x"

    def take(self, q: QuantizedGaussians) -> np.ndarray:  # [N]
        return q.x

    def put(self, fields: dict[str, np.ndarray], values: np.ndarray, c: Coding) -> None:
        fields["x"] = values


@dataclass(frozen=True)
class Group:
    """An attribute group: coded per Gaussian (``<name>_per_gaussian`` in the header) or through a codebook
    of ``k_<name>`` entries, its values ``<name>_bits`` wide either way."""

    name: str  # "shape" or "color"
    columns: tuple[str, ...]
    part: str  # its line in the bit report
    folded: int  # columns the encoder holds constant under accumulated blending (colour x opacity, opacity 1)

    def per_gaussian(self, c: Coding) -> bool:
        return getattr(c, f"{self.name}_per_gaussian")

    def bits(self, c: Coding) -> int:  # of each value, on its column's uniform grid (codec.format.values)
        return getattr(c, f"{self.name}_bits")

    def k(self, c: Coding) -> int:
        return getattr(c, f"k_{self.name}")

    @property
    def codebook_field(self) -> str:  # of QuantizedGaussians: [k, D], or per Gaussian [N, D]
        return f"{self.name}_codebook"

    @property
    def index_field(self) -> str:  # of QuantizedGaussians: [N]
        return f"{self.name}_index"


SHAPE = Group("shape", SHAPE_COLUMNS, "shapes", folded=0)
COLOR = Group("color", COLOR_COLUMNS, "colors", folded=1)
GROUPS = (SHAPE, COLOR)


@dataclass(frozen=True)
class _GroupStream(Stream):
    """A stream of an attribute group's values, on its line of the bit report."""

    group: Group

    @property
    def part(self) -> str:
        return self.group.part


class _ThroughCodebook(_GroupStream):
    """A stream of a group coded through a codebook."""

    def present(self, c: Coding) -> bool:
        return not self.group.per_gaussian(c)


@dataclass(frozen=True)
class ValueColumns(_GroupStream):
    """A group coded per Gaussian: each column's symbols under a model of that column's own symbols."""

    # Bits per column the plan expects entropy coding to save: a prior, since the count follows the
    # measured stream and a gain derived from the models would move every planned count.
    PLAN_GAIN = 1.2

    @property
    def key(self) -> str:
        return f"{self.group.name}_values"

    def present(self, c: Coding) -> bool:
        return self.group.per_gaussian(c)

    def take(self, q: QuantizedGaussians) -> np.ndarray:  # [N, D]: row i is Gaussian i's
        return getattr(q, self.group.codebook_field)

    def put(self, fields: dict[str, np.ndarray], values: np.ndarray, c: Coding) -> None:
        fields[self.group.codebook_field], fields[self.group.index_field] = values, np.arange(c.n_gaussians)

    def write(self, side: BitWriter, values: np.ndarray, c: Coding) -> list[tuple[np.ndarray, object]]:
        alphabet = 1 << self.group.bits(c)
        return [(column, write_model(side, column, alphabet, c.parametric_models)) for column in values.T]

    def read(self, side: BitReader, c: Coding) -> Read:
        alphabet = 1 << self.group.bits(c)
        return Read([Coded(f"payload.{name}", *read_model(side, alphabet, c.n_gaussians, c.parametric_models))
                     for name in self.group.columns])

    def join(self, columns: list[np.ndarray], c: Coding) -> np.ndarray:
        return np.stack(columns, 1).reshape(c.n_gaussians, len(self.group.columns))

    def most_side_bits(self, c: Coding) -> int:
        return len(self.group.columns) * longest_model_bits(1 << self.group.bits(c), c)

    def plan_bits(self, c: Coding) -> tuple[float, float]:
        bits, n, columns = self.group.bits(c), c.n_gaussians, len(self.group.columns)
        coded = columns - (self.group.folded if c.rows_sorted else 0)  # sorted rows: accumulated blending
        # Each coded column about bits - PLAN_GAIN per Gaussian; a model of 2^bits counts per column.
        return coded * (bits - self.PLAN_GAIN), columns * (1 << bits) * (2 * math.log2(n / (1 << bits) + 1) + 1)

    def report_bits(self, values: np.ndarray, c: Coding) -> float:
        return sum(symbol_bits(column) for column in values.T)


@dataclass(frozen=True)
class CodebookIndex(_ThroughCodebook):
    """Each Gaussian's codebook entry, under a model of the indices."""

    @property
    def key(self) -> str:
        return f"{self.group.name}_index"

    def take(self, q: QuantizedGaussians) -> np.ndarray:  # [N]
        return getattr(q, self.group.index_field)

    def put(self, fields: dict[str, np.ndarray], values: np.ndarray, c: Coding) -> None:
        fields[self.group.index_field] = values

    def write(self, side: BitWriter, values: np.ndarray, c: Coding) -> list[tuple[np.ndarray, object]]:
        return [(values, write_model(side, values, self.group.k(c), c.parametric_models))]

    def read(self, side: BitReader, c: Coding) -> Read:
        model = read_model(side, self.group.k(c), c.n_gaussians, c.parametric_models)
        return Read([Coded(f"payload.{self.key}", *model)])

    def most_side_bits(self, c: Coding) -> int:
        return longest_model_bits(self.group.k(c), c)

    def plan_bits(self, c: Coding) -> tuple[float, float]:  # near-uniform use of the entries
        k = self.group.k(c)
        return 0.95 * math.log2(k), k * (2 * math.log2(c.n_gaussians / k + 1) + 1)

    def report_bits(self, values: np.ndarray, c: Coding) -> float:
        return symbol_bits(values)


@dataclass(frozen=True)
class CodebookEntries(_ThroughCodebook):
    """A group's codebook: its entries bit-packed in the side information, after every model."""

    @property
    def key(self) -> str:
        return self.group.codebook_field

    def take(self, q: QuantizedGaussians) -> np.ndarray:  # [k, D]
        return getattr(q, self.group.codebook_field)

    def put(self, fields: dict[str, np.ndarray], values: np.ndarray, c: Coding) -> None:
        fields[self.group.codebook_field] = values

    def write(self, side: BitWriter, values: np.ndarray, c: Coding) -> list[tuple[np.ndarray, object]]:
        side.write_array(values, self.group.bits(c))
        return []

    def read(self, side: BitReader, c: Coding) -> Read:
        k, columns = self.group.k(c), len(self.group.columns)
        return Read([], side.read_array(k * columns, self.group.bits(c)).reshape(k, -1))

    def most_side_bits(self, c: Coding) -> int:
        return self.group.k(c) * len(self.group.columns) * self.group.bits(c)

    def plan_bits(self, c: Coding) -> tuple[float, float]:
        return 0.0, float(self.most_side_bits(c))

    def report_bits(self, values: np.ndarray, c: Coding) -> float:  # its bits are side information
        return 0.0


SHAPE_VALUES, COLOR_VALUES = ValueColumns(SHAPE), ValueColumns(COLOR)
# File order: the side information holds each stream's in this order (every model before the codebooks,
# which have no payload), and the payload each stream's columns in this order.
STREAMS: tuple[Stream, ...] = (Rows(), Columns(), SHAPE_VALUES, CodebookIndex(SHAPE), COLOR_VALUES,
                               CodebookIndex(COLOR), CodebookEntries(SHAPE), CodebookEntries(COLOR))
