"""The .gsi file layout, versions 1 to 4 (docs/bitstream.md): serialising ``QuantizedGaussians``, nothing more.

Header fields are declared with widths and range checks.

Every field is checked before anything is allocated from it, and every failure raises BitstreamError
naming the field. Layout (little-endian):

    header   fixed fields (HEADER_FIELDS) + 14 float16 ranges (3 shape columns, 4 colour columns), then
             with flag bit 5 the background colour (3 bytes)
    side     bit-packed: row-gap histogram (sorted rows only), shape histograms (per column, or of the
             shape index), colour histograms (likewise), then the codebooks of the groups that have one
    payload  range-coded symbols (uint32 words): row (or row gap dy when rows are sorted), column,
             shape (3 column symbols, or a codebook index), colour (4 column symbols, or an index)
    crc32    of everything before it

Version 2 adds only flag bit 3 (colours per Gaussian, like shapes); version 3 only flag bit 4 (each
stream's histogram may be a two-sided geometric model instead, ``codec.format.entropy.Geometric``); version 4
only flag bit 5 (a background colour under the accumulated sum, three bytes after the ranges). A file is
written in the lowest version that can express it, so older readers keep reading what they can.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from codec.format.entropy import BitReader, BitWriter, SymbolDecoder, encode_symbols, gamma_bits, geometric_side_bits
from codec.format.entropy import read_model, uniform, write_model
from codec.errors import BitstreamError
from codec.format.values import BLEND_MODES, COLOR_COLUMNS, RANGE_BOUNDS, SHAPE_COLUMNS, Layout, QuantizedGaussians

MAGIC = b"GSIC"
VERSION = 4  # the newest this reader knows; version 1 to 3 files still decode
MAX_SIDE = 16384
MAX_PIXELS = 40_000_000
MAX_GAUSSIANS = 1 << 20
MAX_K = 4096
MAX_SCALAR_BITS = 10  # per-Gaussian shapes carry a histogram of 2^bits counts per column
MAX_SECTION_BYTES = 64 << 20


@dataclass(frozen=True)
class Field:
    name: str
    fmt: str  # struct code
    low: int
    high: int


HEADER_FIELDS = (
    Field("version", "B", 1, VERSION),
    # bit 0: blend mode (0 ordered alpha, 1 accumulated sum); bit 1: rows sorted; bit 2: shape per Gaussian;
    # bit 3 (version 2 on): colour per Gaussian; bit 4 (version 3 on): parametric models allowed;
    # bit 5 (version 4): a background colour follows the ranges (accumulated blending only)
    Field("flags", "B", 0, 63),
    Field("width", "H", 1, MAX_SIDE),
    Field("height", "H", 1, MAX_SIDE),
    Field("n_gaussians", "I", 0, MAX_GAUSSIANS),
    Field("position_bits", "B", 4, 14),
    Field("k_shape", "H", 0, MAX_K),  # 0 exactly when the shape is coded per Gaussian
    Field("k_color", "H", 0, MAX_K),  # 0 exactly when the colour is coded per Gaussian
    Field("shape_bits", "B", 1, 16),
    Field("color_bits", "B", 1, 16),
    Field("side_length", "I", 0, MAX_SECTION_BYTES),
    Field("payload_length", "I", 0, MAX_SECTION_BYTES),
)
_FIXED = struct.Struct("<4s" + "".join(f.fmt for f in HEADER_FIELDS) + f"{2 * (len(SHAPE_COLUMNS) + len(COLOR_COLUMNS))}e")
HEADER_BYTES = _FIXED.size
BACKGROUND_BYTES = 3  # r, g, b after the fixed header, with flag bit 5
CRC_BYTES = 4


@dataclass(frozen=True)
class Header(Layout):
    """The parsed fixed header: the layout of the Gaussians plus the counts and section lengths."""

    version: int
    n_gaussians: int
    k_shape: int
    k_color: int
    side_length: int
    payload_length: int

    @property
    def side_start(self) -> int:  # offset of the side information
        return HEADER_BYTES + (BACKGROUND_BYTES if self.background is not None else 0)

    @property
    def total_bytes(self) -> int:
        return self.side_start + self.side_length + self.payload_length + CRC_BYTES


@dataclass(frozen=True)
class _Group:
    """One attribute group as the file codes it: per Gaussian (a histogram and a payload stream per column)
    or through a codebook (a histogram of the indices, the entries bit-packed in the side information)."""

    name: str  # "shape" or "color"
    columns: tuple[str, ...]
    per_gaussian: bool
    k: int  # codebook entries; 0 when per Gaussian
    bits: int

    def histograms(self) -> list[tuple[str, int]]:  # (payload field, alphabet) of each of its streams
        if self.per_gaussian:
            return [(f"payload.{name}", 1 << self.bits) for name in self.columns]
        return [(f"payload.{self.name}_index", self.k)]

    def models_bits(self, count_bits: int, parametric: bool) -> int:  # the longest its models can be
        return sum(_longest_model_bits(alphabet, count_bits, parametric) for _, alphabet in self.histograms())

    def codebook_bits(self) -> int:
        return self.k * len(self.columns) * self.bits


def _groups(shape_per_gaussian: bool, color_per_gaussian: bool, k_shape: int, k_color: int, shape_bits: int,
            color_bits: int) -> tuple[_Group, _Group]:  # in file order
    return (_Group("shape", SHAPE_COLUMNS, shape_per_gaussian, k_shape, shape_bits),
            _Group("color", COLOR_COLUMNS, color_per_gaussian, k_color, color_bits))


def _layout_groups(layout: Layout, k_shape: int, k_color: int) -> tuple[_Group, _Group]:
    return _groups(layout.shape_per_gaussian, layout.color_per_gaussian, k_shape, k_color, layout.shape_bits,
                   layout.color_bits)


def write_bitstream(q: QuantizedGaussians) -> bytes:
    layout, n = q.layout, len(q)
    if layout.background is not None and (layout.blend_mode != "sum"
                                          or not all(0 <= v <= 255 for v in layout.background)):
        raise ValueError(f"a background must be three bytes under accumulated blending, not {layout.background!r}")
    rows = np.diff(q.y, prepend=0) if layout.rows_sorted else q.y
    if (rows < 0).any():
        raise ValueError("rows_sorted is set but the Gaussians are not sorted by row")
    side = BitWriter()
    if layout.rows_sorted:
        row_alphabet = int(rows.max()) + 1 if n else 1
        side.write_gamma(row_alphabet)
        row_model = write_model(side, rows, row_alphabet, layout.parametric_models)
    else:
        row_model = uniform(layout.position_bits)
    streams = [(rows, row_model), (q.x, uniform(layout.position_bits))]
    groups = _layout_groups(layout, q.k_shape, q.k_color)
    values = {"shape": (q.shape_codebook, q.shape_index), "color": (q.color_codebook, q.color_index)}
    for group in groups:  # histograms first, then the codebooks (the reader needs every count first)
        codebook, index = values[group.name]
        symbols = list(codebook.T) if group.per_gaussian else [index]
        streams += [(column, write_model(side, column, alphabet, layout.parametric_models))
                    for column, (_, alphabet) in zip(symbols, group.histograms())]
    for group in groups:
        if not group.per_gaussian:
            side.write_array(values[group.name][0], group.bits)
    payload = encode_symbols(streams)
    side_bytes = side.getvalue()
    flags = (BLEND_MODES.index(layout.blend_mode) | (int(layout.rows_sorted) << 1)
             | (int(layout.shape_per_gaussian) << 2) | (int(layout.color_per_gaussian) << 3)
             | (int(layout.parametric_models) << 4) | (int(layout.background is not None) << 5))
    # The lowest version that can express the file: without per-Gaussian colours it is a version 1 file.
    version = (4 if layout.background is not None else 3 if layout.parametric_models
               else 2 if layout.color_per_gaussian else 1)
    values = [version, flags, layout.width, layout.height, n, layout.position_bits, q.k_shape, q.k_color,
              layout.shape_bits, layout.color_bits, len(side_bytes), len(payload)]
    for field, value in zip(HEADER_FIELDS, values):
        _check(field, value)
    ranges = np.concatenate([np.ravel(r) for r in layout.range_arrays()]).astype(np.float16)
    background = bytes(layout.background) if layout.background is not None else b""
    body = _FIXED.pack(MAGIC, *values, *ranges.tolist()) + background + side_bytes + payload
    return body + struct.pack("<I", zlib.crc32(body))


def parse_header(data: bytes) -> Header:
    """Validate the fixed header, the total length and the checksum; allocate nothing from the fields."""
    if len(data) < HEADER_BYTES + CRC_BYTES:
        raise BitstreamError("length", f"{len(data)} bytes is shorter than the {HEADER_BYTES + CRC_BYTES}-byte minimum")
    magic, *rest = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError("magic", f"expected {MAGIC!r}, got {magic!r}")
    values, ranges = rest[: len(HEADER_FIELDS)], np.array(rest[len(HEADER_FIELDS):], dtype=np.float32)
    for field, value in zip(HEADER_FIELDS, values):
        _check(field, value)
    fields = dict(zip((f.name for f in HEADER_FIELDS), values))
    if fields["width"] * fields["height"] > MAX_PIXELS:
        raise BitstreamError("width", f"{fields['width']}x{fields['height']} exceeds {MAX_PIXELS} pixels")
    for name in ("k_shape", "k_color"):
        if fields[name] > max(fields["n_gaussians"], 1):
            raise BitstreamError(name, f"{fields[name]} codebook entries for {fields['n_gaussians']} Gaussians")
    if fields["flags"] & 8 and fields["version"] < 2:
        raise BitstreamError("flags", "per-Gaussian colours (bit 3) need version 2")
    if fields["flags"] & 16 and fields["version"] < 3:
        raise BitstreamError("flags", "parametric models (bit 4) need version 3")
    if fields["flags"] & 32 and fields["version"] < 4:
        raise BitstreamError("flags", "a background colour (bit 5) needs version 4")
    if fields["flags"] & 32 and not fields["flags"] & 1:
        raise BitstreamError("flags", "a background colour (bit 5) needs accumulated blending (bit 0)")
    for bit, group in ((4, "shape"), (8, "color")):
        per_gaussian = bool(fields["flags"] & bit)
        if per_gaussian != (fields[f"k_{group}"] == 0):
            raise BitstreamError(f"k_{group}", f"must be 0 exactly when the {group} is coded per Gaussian")
        if per_gaussian and fields[f"{group}_bits"] > MAX_SCALAR_BITS:
            raise BitstreamError(f"{group}_bits", f"{fields[f'{group}_bits']} exceeds {MAX_SCALAR_BITS} for "
                                                  f"per-Gaussian {group}s")
    # Columns (and unsorted rows) are uniform: N of them need N * b payload bits, whatever else is coded.
    uniform_bits = fields["n_gaussians"] * fields["position_bits"] * (1 if fields["flags"] & 2 else 2)
    if fields["payload_length"] * 8 + 64 < uniform_bits:
        raise BitstreamError("payload_length", f"{fields['payload_length']} bytes cannot hold the positions of "
                                               f"{fields['n_gaussians']} Gaussians")
    most = _most_side_bytes(fields)
    if fields["side_length"] > most:
        raise BitstreamError("side_length", f"{fields['side_length']} bytes, but these counts need at most {most}")
    background_bytes = BACKGROUND_BYTES if fields["flags"] & 32 else 0
    expected = HEADER_BYTES + background_bytes + fields["side_length"] + fields["payload_length"] + CRC_BYTES
    if len(data) != expected:
        raise BitstreamError("length", f"{len(data)} bytes, but the header declares {expected}")
    (crc,) = struct.unpack_from("<I", data, len(data) - CRC_BYTES)
    if crc != zlib.crc32(data[: len(data) - CRC_BYTES]):
        raise BitstreamError("crc32", "checksum mismatch: the file is corrupt")
    shape_ranges = _checked_ranges(ranges[: 2 * len(SHAPE_COLUMNS)], SHAPE_COLUMNS)
    color_ranges = _checked_ranges(ranges[2 * len(SHAPE_COLUMNS):], COLOR_COLUMNS)
    flags = fields.pop("flags")
    background = tuple(data[HEADER_BYTES: HEADER_BYTES + background_bytes]) if background_bytes else None
    return Header(blend_mode=BLEND_MODES[flags & 1], rows_sorted=bool(flags & 2), shape_per_gaussian=bool(flags & 4),
                  color_per_gaussian=bool(flags & 8), parametric_models=bool(flags & 16), background=background,
                  shape_ranges=shape_ranges, color_ranges=color_ranges, **fields)


def read_bitstream(data: bytes, header: Header | None = None) -> QuantizedGaussians:
    """The Gaussians of a file; their ``layout`` is the file's parsed ``Header`` (pass ``parse_header(data)``
    when it is already at hand: parsing checks the CRC of the whole file)."""
    if header is None:
        header = parse_header(data)
    n = header.n_gaussians
    side = BitReader(data[header.side_start: header.side_start + header.side_length], "side_info")
    # The payload's streams in order: (field, model, the histogram it was built from or None, the fewest
    # bits its N symbols can take).
    parametric = header.parametric_models
    streams: list[tuple[str, object, np.ndarray | None, float]] = []
    if header.rows_sorted:
        row_alphabet = side.read_gamma(1 << header.position_bits)
        streams.append(("payload.rows", *read_model(side, row_alphabet, n, parametric)))
    else:
        streams.append(("payload.rows", uniform(header.position_bits), None, n * header.position_bits))
    streams.append(("payload.x", uniform(header.position_bits), None, n * header.position_bits))
    groups = _layout_groups(header, header.k_shape, header.k_color)
    for group in groups:
        for field, alphabet in group.histograms():
            streams.append((field, *read_model(side, alphabet, n, parametric)))
    codebooks = {group.name: side.read_array(group.k * len(group.columns), group.bits).reshape(group.k, -1)
                 for group in groups if not group.per_gaussian}
    if side.remaining_bits() >= 8:
        raise BitstreamError("side_length", f"{side.remaining_bits()} bits left over after the codebooks")
    payload = data[header.side_start + header.side_length: len(data) - CRC_BYTES]
    decoded = _read_payload(payload, streams, n)
    rows, x, rest = decoded[0], decoded[1], decoded[2:]
    values = {}
    for group in groups:  # each group's streams, in order: its columns, or its index
        if group.per_gaussian:
            columns, rest = rest[:len(group.columns)], rest[len(group.columns):]
            values[group.name] = (np.stack(columns, 1).reshape(n, len(group.columns)), np.arange(n))
        else:
            values[group.name], rest = (codebooks[group.name], rest[0]), rest[1:]
    y = np.cumsum(rows) if header.rows_sorted else rows
    if n and y.max() >= (1 << header.position_bits):
        raise BitstreamError("payload.rows", "positions run past the grid")
    (shape_codebook, shape_index), (color_codebook, color_index) = values["shape"], values["color"]
    return QuantizedGaussians(layout=header, x=x, y=y, shape_codebook=shape_codebook, shape_index=shape_index,
                              color_codebook=color_codebook, color_index=color_index)


def _read_payload(payload: bytes, streams, n: int) -> list[np.ndarray]:
    """Decode N symbols per stream, holding the payload to them: no symbol may come from past its end, no
    word may follow the last one, and each histogram must be the one of its symbols. The decode work is
    bounded by the bytes present: N is checked against the fewest bits its streams can take first."""
    fewest = sum(least for _, _, _, least in streams)
    # A range coder cannot beat the information content by more than its 64-bit state.
    if len(payload) * 8 + 64 < fewest:
        raise BitstreamError("payload_length", f"{len(payload)} bytes cannot hold {n} Gaussians "
                                               f"(at least {fewest / 8:.0f} bytes)")
    decoder = SymbolDecoder(payload)
    decoded = [decoder.decode(model, n, field) for field, model, _, _ in streams]
    for (field, _, counts, _), symbols in zip(streams, decoded):
        if counts is not None and not np.array_equal(np.bincount(symbols, minlength=len(counts)), counts):
            raise BitstreamError(field, "the decoded symbols do not match their histogram")
    # The encoder is deterministic, so a payload that is exactly what it writes for these symbols was read
    # through, word for word; anything else was cut short, padded or tampered with.
    try:
        expected = encode_symbols((symbols, model) for symbols, (_, model, _, _) in zip(decoded, streams))
    except Exception as exc:  # constriction refuses a symbol its model gives no mass
        raise BitstreamError("payload", f"a decoded symbol cannot be coded: {exc}") from exc
    if len(expected) > len(payload):
        raise BitstreamError("payload", f"ends {len(expected) - len(payload)} bytes before its {n} Gaussians")
    if len(expected) < len(payload):
        raise BitstreamError("payload", f"{len(payload) - len(expected)} bytes follow the last symbol")
    if expected != payload:
        raise BitstreamError("payload", "is not the range coding of the symbols it decodes to")
    return decoded


def _most_side_bytes(fields: dict) -> int:
    """The longest side information the header's counts allow (every histogram count at its longest code),
    so a file cannot make the reader hold more side bytes than it could ever read."""
    count_bits = gamma_bits(fields["n_gaussians"] + 1)  # of a count + 1 <= N + 1
    position_bits, parametric = fields["position_bits"], bool(fields["flags"] & 16)
    rows = (2 * position_bits + 1 + _longest_model_bits(1 << position_bits, count_bits, parametric)
            if fields["flags"] & 2 else 0)  # gap alphabet and model
    groups = _groups(bool(fields["flags"] & 4), bool(fields["flags"] & 8), fields["k_shape"], fields["k_color"],
                     fields["shape_bits"], fields["color_bits"])
    bits = rows + sum(group.models_bits(count_bits, parametric) + group.codebook_bits() for group in groups)
    return -(-bits // 8)


def _longest_model_bits(alphabet: int, count_bits: int, parametric: bool) -> int:
    """A histogram with every count at its longest code, or with parametric models the choice bit and the
    longer of that and a geometric model."""
    histogram = alphabet * count_bits
    return 1 + max(histogram, geometric_side_bits(alphabet)) if parametric else histogram


def _check(field: Field, value: int) -> None:
    if not field.low <= value <= field.high:
        raise BitstreamError(field.name, f"{value} is outside [{field.low}, {field.high}]")


def _checked_ranges(flat: np.ndarray, columns: tuple[str, ...]) -> tuple[tuple[float, float], ...]:
    pairs = flat.reshape(len(columns), 2)
    for name, (low, high) in zip(columns, pairs):
        bound_low, bound_high = RANGE_BOUNDS[name]
        if not (np.isfinite(low) and np.isfinite(high) and bound_low <= low <= high <= bound_high):
            raise BitstreamError(f"range.{name}", f"[{low}, {high}] is not inside [{bound_low}, {bound_high}]")
    return tuple((float(low), float(high)) for low, high in pairs)

