"""Malformed bitstreams: every truncation and thousands of bit flips give BitstreamError or an image."""

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch

import codec
from codec.format.bitstream import BACKGROUND_BYTES, HEADER_BYTES, HEADER_FIELDS, MAGIC, read_bitstream, write_bitstream
from codec.decode.dequantise import to_render_inputs
from kernels import render
from tests.codec.hostile import gaussians, payload_of, with_payload


def _offset(name: str) -> int:
    offset = len(MAGIC)
    for field in HEADER_FIELDS:
        if field.name == name:
            return offset
        offset += struct.calcsize("<" + field.fmt)
    raise KeyError(name)


def _patched(data: bytes, name: str, value: int) -> bytes:
    """Overwrite one header field and refresh the checksum, so only that field is wrong."""
    field = next(f for f in HEADER_FIELDS if f.name == name)
    body = bytearray(data[:-4])
    struct.pack_into("<" + field.fmt, body, _offset(name), value)
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def _decode_or_error(data: bytes) -> None:
    try:
        pixels = codec.decode(data)
    except codec.BitstreamError:
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3


def test_every_truncation_is_rejected(encoded):
    for length in range(len(encoded.data)):
        with pytest.raises(codec.BitstreamError):
            codec.decode(encoded.data[:length])


def test_random_bit_flips_never_crash(encoded):
    rng = np.random.default_rng(0)
    data = np.frombuffer(encoded.data, dtype=np.uint8)
    for _ in range(3000):
        flipped = data.copy()
        for position in rng.integers(0, len(data) * 8, size=rng.integers(1, 4)):
            flipped[position // 8] ^= 1 << (position % 8)
        _decode_or_error(flipped.tobytes())


def test_bit_flips_with_valid_checksum_never_crash(encoded):
    """Flips behind a recomputed CRC reach the field checks and the range decoder themselves."""
    rng = np.random.default_rng(1)
    body = np.frombuffer(encoded.data[:-4], dtype=np.uint8)
    for _ in range(1500):
        flipped = body.copy()
        position = rng.integers(0, len(body) * 8)
        flipped[position // 8] ^= 1 << (position % 8)
        raw = flipped.tobytes()
        _decode_or_error(raw + struct.pack("<I", zlib.crc32(raw)))


@pytest.mark.parametrize("name, value, field", [
    ("version", 7, "version"),
    ("flags", 128, "flags"),
    ("flags", 64, "flags"),
    ("flags", 3, "k_shape"),  # says codebook shapes, but k_shape is 0
    ("k_shape", 5, "k_shape"),  # per-Gaussian shapes carry no codebook
    ("width", 0, "width"),
    ("n_gaussians", 2**31, "n_gaussians"),
    ("position_bits", 30, "position_bits"),
    ("k_shape", 4000, "k_shape"),
    ("side_length", 2**31, "side_length"),
    ("payload_length", 12, "payload_length"),  # too short for the positions, before the length check
])
def test_header_fields_are_range_checked(encoded, name, value, field):
    data = _patched(encoded.data, name, value)
    with pytest.raises(codec.BitstreamError) as info:
        codec.decode(data)
    assert info.value.field in (field, "length")


@pytest.fixture(scope="module")
def version_2() -> bytes:
    """A version 2 file: shapes and colours per Gaussian."""
    return write_bitstream(gaussians(64, 48, 40, 2.0, position_bits=8, per_gaussian=True, shape_bits=5,
                                     color_per_gaussian=True, color_bits=6, seed=4))


def test_version_2_round_trips_its_symbols(version_2):
    header = codec.inspect(version_2)
    assert (header.version, header.k_color, header.color_per_gaussian) == (2, 0, True)
    q = read_bitstream(version_2)
    expected = gaussians(64, 48, 40, 2.0, position_bits=8, per_gaussian=True, shape_bits=5,
                         color_per_gaussian=True, color_bits=6, seed=4)
    assert np.array_equal(q.color_codebook, expected.color_codebook) and np.array_equal(q.x, expected.x)
    assert codec.decode(version_2).shape == (48, 64, 3)


@pytest.mark.parametrize("name, value, field", [
    ("version", 1, "flags"),  # per-Gaussian colours are a version 2 feature
    ("k_color", 3, "k_color"),  # per-Gaussian colours carry no codebook
    ("color_bits", 11, "color_bits"),  # each of the 4 colour histograms has 2^color_bits counts
])
def test_version_2_fields_are_checked(version_2, name, value, field):
    with pytest.raises(codec.BitstreamError) as info:
        codec.decode(_patched(version_2, name, value))
    assert info.value.field == field


def _peaked_version_3(parametric: bool) -> bytes:
    """The version 2 file's Gaussians with peaked shape and colour columns (as trained ones are), written
    with parametric models allowed (version 3) or not (version 2)."""
    q = gaussians(64, 48, 40, 2.0, position_bits=8, per_gaussian=True, shape_bits=5, color_per_gaussian=True,
                  color_bits=6, seed=4)
    rng = np.random.default_rng(6)
    peaked = lambda bits, shape: np.clip(9 + np.round(rng.laplace(0, 1.5, shape)), 0, (1 << bits) - 1)  # noqa: E731
    shapes = peaked(5, (40, 3)).astype(np.int64)
    shapes[:, 1] = 0  # round, as the xy range is (0, 0)
    colors = np.column_stack([peaked(6, (40, 3)), np.full(40, 63)]).astype(np.int64)
    layout = dataclasses.replace(q.layout, parametric_models=parametric)
    return write_bitstream(dataclasses.replace(q, layout=layout, shape_codebook=shapes, color_codebook=colors))


@pytest.fixture(scope="module")
def version_3() -> bytes:
    return _peaked_version_3(parametric=True)


def test_version_3_decodes_as_its_version_2_twin_in_fewer_bytes(version_3):
    twin = _peaked_version_3(parametric=False)
    assert (codec.inspect(version_3).version, codec.inspect(twin).version) == (3, 2)
    assert codec.inspect(version_3).parametric_models
    assert len(version_3) < len(twin) - 32  # geometric models instead of 2^5- and 2^6-count histograms
    q, q_twin = read_bitstream(version_3), read_bitstream(twin)
    assert np.array_equal(q.shape_codebook, q_twin.shape_codebook)
    assert np.array_equal(q.color_codebook, q_twin.color_codebook) and np.array_equal(q.y, q_twin.y)
    assert np.array_equal(codec.decode(version_3), codec.decode(twin))


@pytest.mark.parametrize("name, value, field", [
    ("version", 2, "flags"),  # parametric models are a version 3 feature
    ("side_length", 0, "side_length"),
])
def test_version_3_fields_are_checked(version_3, name, value, field):
    with pytest.raises(codec.BitstreamError) as info:
        codec.decode(_patched(version_3, name, value))
    assert info.value.field in (field, "length")


BACKGROUND = (12, 200, 255)


@pytest.fixture(scope="module")
def version_4() -> bytes:
    """The version 3 file drawn over a background colour."""
    q = read_bitstream(_peaked_version_3(parametric=True))
    return write_bitstream(dataclasses.replace(q, layout=dataclasses.replace(q.layout, background=BACKGROUND)))


def test_version_4_is_its_version_3_twin_over_the_background(version_4):
    twin = _peaked_version_3(parametric=True)
    header = codec.inspect(version_4)
    assert (header.version, header.background, codec.inspect(twin).background) == (4, BACKGROUND, None)
    assert len(version_4) == len(twin) + BACKGROUND_BYTES
    q = read_bitstream(twin)
    with torch.no_grad():  # the twin's own render, the background added before the clamp and the rounding
        image = render(*map(torch.from_numpy, to_render_inputs(q)), 48, 64, "sum") + torch.tensor(BACKGROUND) / 255
    expected = image.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    assert np.array_equal(codec.decode(version_4), expected)
    assert not np.array_equal(expected, codec.decode(twin))


def test_black_background_decodes_like_none(version_4):
    q = read_bitstream(version_4)
    black = write_bitstream(dataclasses.replace(q, layout=dataclasses.replace(q.layout, background=(0, 0, 0))))
    assert np.array_equal(codec.decode(black), codec.decode(_peaked_version_3(parametric=True)))


@pytest.mark.parametrize("name, value, field", [
    ("version", 3, "flags"),  # a background is a version 4 feature
    ("flags", 0b111110, "flags"),  # ... and needs accumulated blending (bit 0)
    ("side_length", 0, "side_length"),
])
def test_version_4_fields_are_checked(version_4, name, value, field):
    with pytest.raises(codec.BitstreamError) as info:
        codec.decode(_patched(version_4, name, value))
    assert info.value.field in (field, "length")


def test_a_background_under_alpha_blending_is_not_written(version_4):
    q = read_bitstream(version_4)
    with pytest.raises(ValueError, match="background"):
        write_bitstream(dataclasses.replace(q, layout=dataclasses.replace(q.layout, blend_mode="alpha",
                                                                          rows_sorted=False)))


@pytest.mark.parametrize("version", ["version_2", "version_3", "version_4"])
def test_later_versions_truncations_and_flips_are_typed_errors(version, request):
    data = request.getfixturevalue(version)
    for length in range(len(data)):
        with pytest.raises(codec.BitstreamError):
            codec.decode(data[:length])
    rng = np.random.default_rng(2)
    body = np.frombuffer(data[:-4], dtype=np.uint8)
    for _ in range(500):
        flipped = body.copy()
        position = rng.integers(0, len(body) * 8)
        flipped[position // 8] ^= 1 << (position % 8)
        _decode_or_error(flipped.tobytes() + struct.pack("<I", zlib.crc32(flipped.tobytes())))


def test_absurd_pixel_count_is_rejected_before_allocation(encoded):
    data = _patched(_patched(encoded.data, "width", 16384), "height", 16384)
    with pytest.raises(codec.BitstreamError, match="pixels"):
        codec.decode(data)


@pytest.mark.parametrize("data, field", [
    (b"", "length"),
    (b"GSIC", "length"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "magic"),
])
def test_garbage_is_rejected(data, field):
    with pytest.raises(codec.BitstreamError) as info:
        codec.decode(data)
    assert info.value.field == field


def test_trailing_bytes_are_rejected(encoded):
    with pytest.raises(codec.BitstreamError, match="length"):
        codec.decode(encoded.data + b"\0")


def test_wrong_checksum_is_rejected(encoded):
    data = bytearray(encoded.data)
    data[HEADER_BYTES + 1] ^= 0x10
    with pytest.raises(codec.BitstreamError, match="crc32"):
        codec.decode(bytes(data))


def test_bitstream_error_is_a_value_error():
    assert issubclass(codec.BitstreamError, ValueError)


def test_a_file_without_gaussians_decodes_to_black():
    """The format allows N = 0: the empty sum of Gaussians, rendered on black (not constriction's ValueError)."""
    data = write_bitstream(gaussians(40, 24, 0, 1.0))
    assert codec.inspect(data).n_gaussians == 0
    pixels = codec.decode(data)
    assert pixels.shape == (24, 40, 3) and not pixels.any()


def test_every_payload_cut_behind_a_fresh_crc_is_refused(encoded):
    """A payload cut short (lengths and CRC made consistent) no longer decodes from the range decoder's zeros."""
    length = len(payload_of(encoded.data))
    for keep in range(0, length, 4):
        with pytest.raises(codec.BitstreamError) as info:
            codec.decode(with_payload(encoded.data, payload_of(encoded.data)[:keep]))
        assert info.value.field.startswith("payload")


@pytest.mark.parametrize("words", [1, 2, 3, 17])
@pytest.mark.parametrize("word", [0, 1, 0xFFFFFFFF])
def test_payload_words_after_the_last_symbol_are_refused(encoded, words, word):
    data = with_payload(encoded.data, payload_of(encoded.data) + struct.pack("<I", word) * words)
    with pytest.raises(codec.BitstreamError, match="follow the last symbol") as info:
        codec.decode(data)
    assert info.value.field == "payload"


def test_side_information_longer_than_any_header_allows_is_refused(encoded):
    data = _patched(encoded.data, "side_length", 1 << 20)
    with pytest.raises(codec.BitstreamError) as info:
        codec.decode(data)
    assert info.value.field == "side_length"
