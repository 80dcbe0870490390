"""Structured fuzzing: CRC-valid files with header fields, side-information counts and payload lengths at
their extremes (random flips alone stop at the CRC). Property: a typed error (BitstreamError, or
DecodeLimitError under the service's limits) or a valid image, within the decode bounds."""

from __future__ import annotations

import resource
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import codec
from codec.format.bitstream import BACKGROUND_BYTES, HEADER_BYTES, HEADER_FIELDS, MAGIC, MAX_SIDE, write_bitstream
from codec.format.texture import LATENT_BOUND, MAX_WEIGHT, Texture, layer_shapes, level_shape, write_texture
from codec.format.values import COLOR_COLUMNS, RANGE_BOUNDS, SHAPE_COLUMNS, Layout, QuantizedGaussians
from service.settings import Settings
from tests.codec.test_hostile_files import MAX_CPU_SECONDS

LIMITS = Settings()
FIELD = {f.name: f for f in HEADER_FIELDS}


def _extreme(low: int, high: int) -> st.SearchStrategy[int]:
    """Mostly the ends of a range and their neighbours, sometimes anything inside."""
    edges = sorted({low, min(low + 1, high), max(high - 1, low), high})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _range(column: str) -> st.SearchStrategy[tuple[float, float]]:
    low, high = RANGE_BOUNDS[column]
    return st.sampled_from([(low, low), (low, high), (high, high), (0.0, 0.0)]) if low <= 0 <= high else \
        st.sampled_from([(low, low), (low, high), (high, high)])


@st.composite
def valid_files(draw) -> bytes:
    """A well-formed file whose layout sits at the format's extremes (few Gaussians, so it is quick)."""
    n = draw(st.sampled_from([0, 1, 2, 3, 17, 64]))
    # bit 3 (colours per Gaussian) makes a version 2 file, bit 4 (parametric models) a version 3 one, bit 5
    # (a background, accumulated blending only) a version 4 one
    flags = draw(st.integers(0, 63))
    if flags & 32:
        flags |= 1
    rows_sorted, per_gaussian, color_per_gaussian = bool(flags & 2), bool(flags & 4), bool(flags & 8)
    parametric = bool(flags & 16)
    background = tuple(draw(st.lists(st.sampled_from([0, 1, 128, 254, 255]), min_size=3, max_size=3))) \
        if flags & 32 else None
    bits = draw(st.sampled_from([4, 5, 13, 14]))
    shape_bits = draw(st.sampled_from([1, 2, 9, 10] if per_gaussian else [1, 2, 15, 16]))
    color_bits = draw(st.sampled_from([1, 2, 9, 10] if color_per_gaussian else [1, 2, 15, 16]))
    width, height = draw(st.sampled_from([(1, 1), (1, 64), (64, 1), (MAX_SIDE, 2), (3, MAX_SIDE), (640, 480)]))
    k_shape = 0 if per_gaussian else draw(st.integers(1, max(n, 1)))
    k_color = 0 if color_per_gaussian else draw(st.integers(1, max(n, 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Uniform symbols keep their histograms; peaked ones (as trained columns are) take geometric models.
    peaked = parametric and draw(st.booleans())

    def symbols(bits_: int, shape) -> np.ndarray:
        if not peaked:
            return rng.integers(0, 1 << bits_, shape)
        centre = rng.integers(0, 1 << bits_)
        return np.clip(centre + np.round(rng.laplace(0, 2, shape)), 0, (1 << bits_) - 1).astype(np.int64)

    x, y = rng.integers(0, 1 << bits, n), rng.integers(0, 1 << bits, n)
    if rows_sorted:
        order = np.lexsort((x, y))
        x, y = x[order], y[order]
    layout = Layout(width=width, height=height, blend_mode=("alpha", "sum")[flags & 1], rows_sorted=rows_sorted,
                    shape_per_gaussian=per_gaussian, color_per_gaussian=color_per_gaussian, parametric_models=parametric, background=background, position_bits=bits,
                    shape_bits=shape_bits,
                    color_bits=color_bits, shape_ranges=tuple(draw(_range(c)) for c in SHAPE_COLUMNS),
                    color_ranges=tuple(draw(_range(c)) for c in COLOR_COLUMNS))
    shapes = symbols(shape_bits, (n if per_gaussian else k_shape, 3))
    q = QuantizedGaussians(layout=layout, x=x, y=y, shape_codebook=shapes,
                           shape_index=np.arange(n) if per_gaussian else rng.integers(0, k_shape, n),
                           color_codebook=symbols(color_bits, (n if color_per_gaussian else k_color, 4)),
                           color_index=np.arange(n) if color_per_gaussian else rng.integers(0, k_color, n))
    return write_bitstream(q, draw(textures(width, height)) if draw(st.booleans()) else b"")


@st.composite
def textures(draw, width: int, height: int) -> bytes:
    """A texture section (version 6) at its extremes: one level to eight, one hidden unit to 32, latents all
    zero, peaked or spread to their bounds, everywhere or in a band (so the writer codes levels by context),
    weights up to their largest."""
    levels, hidden = draw(st.sampled_from([1, 2, 8])), draw(st.sampled_from([1, 4, 32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([0.0, 1.0, 300.0]))
    latents = tuple(np.clip(np.round(rng.laplace(0, spread, level_shape(height, width, level)) if spread else
                                     np.zeros(level_shape(height, width, level))), -LATENT_BOUND, LATENT_BOUND)
                    .astype(np.int32) for level in range(levels))
    if draw(st.booleans()):  # texture in the left third only: the checkerboard's context pays
        latents = tuple(np.where(np.indices(z.shape)[1] < z.shape[1] / 3, z, 0).astype(np.int32) for z in latents)
    largest = draw(st.sampled_from([1, 300, MAX_WEIGHT]))
    weights = tuple(rng.integers(-largest, largest + 1, (inputs + 1, outputs)).astype(np.int32)
                    for inputs, outputs in layer_shapes(levels, hidden))
    return write_texture(Texture(latents=latents, weights=weights, exponents=tuple(draw(st.sampled_from([0, 15]))
                                                                                    for _ in weights)))


def _offset(name: str) -> int:
    return len(MAGIC) + sum(struct.calcsize("<" + f.fmt) for f in HEADER_FIELDS[:[f.name for f in HEADER_FIELDS].index(name)])


def _side_start(body: bytes) -> int:  # the fixed header, the background's bytes (flag bit 5), the texture's length (6)
    (flags,) = struct.unpack_from("<B", body, _offset("flags"))
    return HEADER_BYTES + (BACKGROUND_BYTES if flags & 32 else 0) + (4 if flags & 64 else 0)


def _sealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@st.composite
def hostile_files(draw) -> bytes:
    """A valid file, then one structured change behind a fresh CRC: a header field set to an extreme
    (including just outside its range), a side-information byte or count changed, or the payload cut,
    padded or replaced."""
    body = bytearray(draw(valid_files())[:-4])
    side_length, payload_length = struct.unpack_from("<II", body, _offset("side_length"))
    side_start = _side_start(body)  # before any change: the flags may be the field changed
    texture_start = side_start + side_length + payload_length
    kind = draw(st.sampled_from(["field", "field", "side", "payload", "texture"]))
    if kind == "field":
        field = FIELD[draw(st.sampled_from([f.name for f in HEADER_FIELDS]))]
        limit = (1 << (8 * struct.calcsize(field.fmt))) - 1
        value = draw(st.one_of(_extreme(field.low, field.high),
                               st.sampled_from([0, max(field.low - 1, 0), min(field.high + 1, limit), limit])))
        struct.pack_into("<" + field.fmt, body, _offset(field.name), value)
    elif kind == "side" and side_length:
        position = side_start + draw(st.integers(0, side_length - 1))
        body[position] = draw(st.sampled_from([0x00, 0xFF, 0x80, 0x01, body[position] ^ 0xFF]))
    elif kind == "texture" and len(body) > texture_start:  # its side length, its side information or its payload
        position = texture_start + draw(st.integers(0, len(body) - texture_start - 1))
        body[position] = draw(st.sampled_from([0x00, 0xFF, 0x80, 0x01, body[position] ^ 0xFF]))
    else:
        payload = bytes(body[side_start + side_length:])
        words = draw(st.sampled_from(["cut", "pad", "random"]))
        if words == "cut":
            payload = payload[: draw(st.integers(0, len(payload) // 4)) * 4]
        elif words == "pad":
            payload += draw(st.binary(min_size=1, max_size=16)).ljust(4, b"\0") * draw(st.integers(1, 16))
            payload = payload[: len(payload) // 4 * 4]
        else:
            payload = draw(st.binary(min_size=len(payload), max_size=len(payload) + 64))
            payload = payload[: len(payload) // 4 * 4]
        body = body[: side_start + side_length] + bytearray(payload)
        struct.pack_into("<I", body, _offset("payload_length"), len(payload))
    return _sealed(bytes(body))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def check_decode(data: bytes) -> None:
    """The property: an image of the header's (bounded) size, or a typed error; within the CPU bound."""
    started = _cpu()
    try:
        pixels = codec.decode(data, max_pixels=min(LIMITS.max_pixels, LIMITS.decode_max_pixels),
                              max_evaluations=LIMITS.decode_max_evaluations)
    except (codec.BitstreamError, codec.DecodeLimitError) as exc:
        assert exc.field
        event(f"{type(exc).__name__}: {exc.field}")
    else:
        event("image")
        header = codec.inspect(data)
        assert pixels.dtype == np.uint8 and pixels.shape == (header.height, header.width, 3)
    assert _cpu() - started <= MAX_CPU_SECONDS * 2  # one try, not the least of three: room for noise


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], derandomize=True)


@settings(max_examples=150, **FUZZ)
@given(valid_files())
def test_valid_files_at_the_extremes_decode(data):
    check_decode(data)
    assert codec.decode(data).shape[2] == 3  # a valid file always decodes under the library's own limits


@settings(max_examples=300, **FUZZ)
@given(hostile_files())
def test_hostile_files_are_typed_errors_or_images(data):
    check_decode(data)


@pytest.mark.slow
@settings(max_examples=5000, **{**FUZZ, "derandomize": False})
@given(hostile_files())
def test_hostile_files_long_run(data):
    check_decode(data)
