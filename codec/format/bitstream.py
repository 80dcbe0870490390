"""The .gsi file layout, versions 1 to 6 (docs/bitstream.md): serialising ``QuantizedGaussians`` and the sections
that follow them.

Header fields are declared with widths and range checks, the flags with the version each first appeared in,
and the sections by the table of coded streams (``codec.format.streams.STREAMS``).

Every field is checked before anything is allocated from it, and every failure raises BitstreamError
naming the field. Layout (little-endian):

    header   fixed fields (HEADER_FIELDS) + 14 float16 ranges (3 shape columns, 4 colour columns), then
             with Flag.BACKGROUND the background colour (3 bytes), with Flag.TEXTURE the texture section's
             length (u32)
    side     bit-packed: each stream's side information in table order (models first, then codebooks)
    payload  range-coded symbols (uint32 words): each stream's columns in table order
    texture  with Flag.TEXTURE, the texture layer (codec.format.texture)
    crc32    of everything before it

A file is written in the lowest version that can express its flags (FIRST_VERSION), so older readers keep
reading what they can.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from codec.errors import BitstreamError
from codec.format.entropy import BitReader, BitWriter, encode_symbols, read_payload
from codec.format.streams import GROUPS, STREAMS, Coding, Stream, present
from codec.format.values import BLEND_MODES, COLOR_COLUMNS, RANGE_BOUNDS, SHAPE_COLUMNS, Layout, QuantizedGaussians


class Flag(enum.IntFlag):
    """The header's ``flags`` byte."""

    SUM_BLEND = 1  # the blend mode: accumulated sum; clear, ordered alpha blending
    ROWS_SORTED = 2  # stored in non-decreasing row order, rows coded as gaps
    SHAPE_PER_GAUSSIAN = 4
    COLOR_PER_GAUSSIAN = 8
    PARAMETRIC_MODELS = 16  # each model may be a two-sided geometric instead of a histogram
    BACKGROUND = 32  # a background colour follows the ranges (needs SUM_BLEND)
    TEXTURE = 64  # a texture layer's section follows the payload, its length after the background
    TEXTURE_CONTEXT = 128  # the section's levels may be coded by context (``codec.format.texture``; needs TEXTURE)


# The version chain: the version each flag first appeared in. A writer emits the highest of its flags'
# (1 for none); a reader refuses a flag in a file of an earlier version.
FIRST_VERSION = {Flag.SUM_BLEND: 1, Flag.ROWS_SORTED: 1, Flag.SHAPE_PER_GAUSSIAN: 1, Flag.COLOR_PER_GAUSSIAN: 2,
                 Flag.PARAMETRIC_MODELS: 3, Flag.BACKGROUND: 4, Flag.TEXTURE: 5,
                 Flag.TEXTURE_CONTEXT: 6}
# Flags that are the Layout field of their lower-case name.
LAYOUT_FLAGS = (Flag.ROWS_SORTED, Flag.SHAPE_PER_GAUSSIAN, Flag.COLOR_PER_GAUSSIAN, Flag.PARAMETRIC_MODELS)

MAGIC = b"GSIC"
VERSION = max(FIRST_VERSION.values())  # the newest this reader knows; every earlier one still decodes
MAX_SIDE = 16384
MAX_PIXELS = 40_000_000
MAX_GAUSSIANS = 1 << 20
MAX_K = 4096
MAX_SCALAR_BITS = 10  # per-Gaussian values carry a model of 2^bits symbols per column
MAX_SECTION_BYTES = 64 << 20


@dataclass(frozen=True)
class Field:
    name: str
    fmt: str  # struct code
    low: int
    high: int


HEADER_FIELDS = (
    Field("version", "B", 1, VERSION),
    Field("flags", "B", 0, sum(Flag)),
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
BACKGROUND_BYTES = 3  # r, g, b after the fixed header, with Flag.BACKGROUND
_TEXTURE_LENGTH = struct.Struct("<I")  # after them, with Flag.TEXTURE
TEXTURE_LENGTH_BYTES = _TEXTURE_LENGTH.size
CRC_BYTES = 4
# Enough of a file's start to know its length (``declared_length``) whatever its flags.
HEADER_PREFIX = HEADER_BYTES + BACKGROUND_BYTES + TEXTURE_LENGTH_BYTES + CRC_BYTES


@dataclass(frozen=True)
class Header(Layout):
    """The parsed fixed header: the layout of the Gaussians plus the counts and section lengths."""

    version: int
    n_gaussians: int
    k_shape: int
    k_color: int
    side_length: int
    payload_length: int
    texture_length: int = 0  # 0: no texture layer
    texture_context: bool = False  # its levels may be coded by context (version 6 on)

    @property
    def side_start(self) -> int:  # offset of the side information
        return (HEADER_BYTES + (BACKGROUND_BYTES if self.background is not None else 0)
                + (_TEXTURE_LENGTH.size if self.texture_length else 0))

    @property
    def texture_start(self) -> int:  # offset of the texture section
        return self.side_start + self.side_length + self.payload_length

    @property
    def total_bytes(self) -> int:
        return self.texture_start + self.texture_length + CRC_BYTES


def write_bitstream(q: QuantizedGaussians, texture: bytes = b"") -> bytes:
    """The file of ``q``, followed by a texture section (``codec.format.texture.write_texture``) if given."""
    layout = q.layout
    if layout.background is not None and (layout.blend_mode != "sum"
                                          or not all(0 <= v <= 255 for v in layout.background)):
        raise ValueError(f"a background must be three bytes under accumulated blending, not {layout.background!r}")
    if len(texture) > MAX_SECTION_BYTES:
        raise ValueError(f"a texture section of {len(texture)} bytes exceeds {MAX_SECTION_BYTES}")
    flags = layout_flags(layout) | (Flag.TEXTURE | Flag.TEXTURE_CONTEXT if texture else Flag(0))
    header = Header(**{f.name: getattr(layout, f.name) for f in dataclasses.fields(Layout)},
                    version=max((FIRST_VERSION[flag] for flag in flags), default=1), n_gaussians=len(q),
                    k_shape=q.k_shape, k_color=q.k_color, side_length=0, payload_length=0)  # lengths: below
    side, payload = write_sections(STREAMS, header, {stream.key: stream.take(q) for stream in present(STREAMS, header)})
    header = dataclasses.replace(header, side_length=len(side), payload_length=len(payload))
    values = [int(flags) if field.name == "flags" else getattr(header, field.name) for field in HEADER_FIELDS]
    for field, value in zip(HEADER_FIELDS, values):
        _check(field, value)
    ranges = np.concatenate([np.ravel(r) for r in layout.range_arrays()]).astype(np.float16)
    background = bytes(layout.background) if layout.background is not None else b""
    texture_length = _TEXTURE_LENGTH.pack(len(texture)) if texture else b""
    body = _FIXED.pack(MAGIC, *values, *ranges.tolist()) + background + texture_length + side + payload + texture
    return body + struct.pack("<I", zlib.crc32(body))


def layout_flags(layout: Layout) -> Flag:
    flags = Flag(BLEND_MODES.index(layout.blend_mode))  # bit 0 is the blend mode's index
    for flag in LAYOUT_FLAGS:
        if getattr(layout, flag.name.lower()):
            flags |= flag
    return flags | Flag.BACKGROUND if layout.background is not None else flags


def write_sections(streams: tuple[Stream, ...], c: Coding, values: dict[str, np.ndarray]) -> tuple[bytes, bytes]:
    """The side information and the payload of ``streams``' ``values`` (by stream key)."""
    side = BitWriter()
    coded = [column for stream in present(streams, c) for column in stream.write(side, values[stream.key], c)]
    return side.getvalue(), encode_symbols(coded)


def declared_length(head: bytes) -> int:
    """The length a file declares, from its first bytes (``HEADER_PREFIX`` or all of a shorter file), once its
    fields are checked: a reader of a stream reads no more than this (and one byte, to see whether more follow)."""
    return _parse_fields(head)[0].total_bytes


def _parse_fields(data: bytes) -> tuple[Header, np.ndarray]:  # (the header without its ranges, [14] the ranges)
    """The fixed fields, each checked, and the optional ones their flags announce."""
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
    flags = Flag(fields.pop("flags"))
    for flag in flags:
        if FIRST_VERSION[flag] > fields["version"]:
            raise BitstreamError("flags", f"{flag.name.lower()} (bit {flag.bit_length() - 1}) needs version "
                                          f"{FIRST_VERSION[flag]}")
    if Flag.BACKGROUND in flags and Flag.SUM_BLEND not in flags:
        raise BitstreamError("flags", "a background colour (bit 5) needs accumulated blending (bit 0)")
    if Flag.TEXTURE_CONTEXT in flags and Flag.TEXTURE not in flags:
        raise BitstreamError("flags", "a texture context (bit 7) needs a texture section (bit 6)")
    background = tuple(data[HEADER_BYTES: HEADER_BYTES + BACKGROUND_BYTES]) if Flag.BACKGROUND in flags else None
    texture_length = 0
    if Flag.TEXTURE in flags:
        at = HEADER_BYTES + (BACKGROUND_BYTES if background is not None else 0)
        if len(data) < at + _TEXTURE_LENGTH.size + CRC_BYTES:
            raise BitstreamError("length", f"{len(data)} bytes cannot hold the texture section's length")
        (texture_length,) = _TEXTURE_LENGTH.unpack_from(data, at)
        if not 1 <= texture_length <= MAX_SECTION_BYTES:
            raise BitstreamError("texture_length", f"{texture_length} is outside [1, {MAX_SECTION_BYTES}]")
    return Header(blend_mode=BLEND_MODES[flags & Flag.SUM_BLEND], background=background, shape_ranges=(),
                  color_ranges=(), **{flag.name.lower(): flag in flags for flag in LAYOUT_FLAGS}, **fields,
                  texture_length=texture_length, texture_context=Flag.TEXTURE_CONTEXT in flags), ranges


def parse_header(data: bytes) -> Header:
    """Validate the fixed header, the total length and the checksum; allocate nothing from the fields."""
    header, ranges = _parse_fields(data)
    for group in GROUPS:
        per_gaussian = group.per_gaussian(header)
        if per_gaussian != (group.k(header) == 0):
            raise BitstreamError(f"k_{group.name}", f"must be 0 exactly when the {group.name} is coded per Gaussian")
        if per_gaussian and group.bits(header) > MAX_SCALAR_BITS:
            raise BitstreamError(f"{group.name}_bits", f"{group.bits(header)} exceeds {MAX_SCALAR_BITS} for "
                                                       f"per-Gaussian {group.name}s")
    # Positions are coded uniformly (sorted rows aside): they take their bits whatever else is coded.
    least = sum(stream.least_payload_bits(header) for stream in present(STREAMS, header))
    if header.payload_length * 8 + 64 < least:
        raise BitstreamError("payload_length", f"{header.payload_length} bytes cannot hold the positions of "
                                               f"{header.n_gaussians} Gaussians")
    most = most_side_bytes(STREAMS, header)
    if header.side_length > most:
        raise BitstreamError("side_length", f"{header.side_length} bytes, but these counts need at most {most}")
    if len(data) != header.total_bytes:
        raise BitstreamError("length", f"{len(data)} bytes, but the header declares {header.total_bytes}")
    (crc,) = struct.unpack_from("<I", data, len(data) - CRC_BYTES)
    if crc != zlib.crc32(data[: len(data) - CRC_BYTES]):
        raise BitstreamError("crc32", "checksum mismatch: the file is corrupt")
    return dataclasses.replace(header, shape_ranges=_checked_ranges(ranges[: 2 * len(SHAPE_COLUMNS)], SHAPE_COLUMNS),
                               color_ranges=_checked_ranges(ranges[2 * len(SHAPE_COLUMNS):], COLOR_COLUMNS))


def read_bitstream(data: bytes, header: Header | None = None) -> QuantizedGaussians:
    """The Gaussians of a file; their ``layout`` is the file's parsed ``Header`` (pass ``parse_header(data)``
    when it is already at hand: parsing checks the CRC of the whole file)."""
    if header is None:
        header = parse_header(data)
    side_end = header.side_start + header.side_length
    values = read_sections(STREAMS, header, data[header.side_start: side_end], data[side_end: header.texture_start])
    fields: dict[str, np.ndarray] = {}
    for stream in present(STREAMS, header):  # after the whole payload is held to its symbols
        stream.put(fields, values[stream.key], header)
    return QuantizedGaussians(layout=header, **fields)


def read_sections(streams: tuple[Stream, ...], c: Coding, side: bytes, payload: bytes) -> dict[str, np.ndarray]:
    """What ``write_sections`` wrote: each present stream's values, by key."""
    reader = BitReader(side, "side_info")
    reads = [(stream, stream.read(reader, c)) for stream in present(streams, c)]
    if reader.remaining_bits() >= 8:
        raise BitstreamError("side_length", f"{reader.remaining_bits()} bits left over after the codebooks")
    columns = [column for _, read in reads for column in read.columns]
    decoded = iter(read_payload(payload, columns, [c.n_gaussians] * len(columns), f"{c.n_gaussians} Gaussians"))
    return {stream.key: read.values if read.values is not None else stream.join([next(decoded) for _ in read.columns], c)
            for stream, read in reads}


def most_side_bytes(streams: tuple[Stream, ...], c: Coding) -> int:
    """The longest side information the header's counts allow (every model and codebook at its longest),
    so a file cannot make the reader hold more side bytes than it could ever read."""
    return -(-sum(stream.most_side_bits(c) for stream in present(streams, c)) // 8)


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

