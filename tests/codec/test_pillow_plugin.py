"""The Pillow plugin registered by ``import codec``: Image.open / Image.save / thumbnail on .gsi files."""

import io
import math

import numpy as np
import pytest
from PIL import Image

import codec


def test_gsi_is_a_registered_extension():
    assert Image.registered_extensions()[".gsi"] == "GSI"
    codec.register_pillow()  # idempotent
    assert Image.ID.count("GSI") == 1


def test_open_decodes_like_codec_decode(tmp_path, encoded):
    path = tmp_path / "crop.gsi"
    path.write_bytes(encoded.data)
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("GSI", "RGB", (96, 64))
        assert np.array_equal(np.asarray(im), codec.decode(encoded.data))


def test_save_encodes_with_the_given_rate(tmp_path, crop):
    path = tmp_path / "saved.gsi"
    Image.fromarray(crop).save(path, bpp=1.0, iterations=20)
    data = path.read_bytes()
    assert codec.inspect(data).width == 96 and len(data) * 8 / (96 * 64) <= 1.1
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="GSI", preset="high", iterations=20)
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        assert im.size == (96, 64) and codec.psnr(crop, np.asarray(im)) > 15


def test_thumbnail_renders_the_gaussians_at_the_small_size(encoded):
    with Image.open(io.BytesIO(encoded.data)) as im:
        im.draft("RGB", (48, 32))
        assert im.size == (48, 32)
        assert np.array_equal(np.asarray(im), codec.decode(encoded.data, width=48, height=32))
    with Image.open(io.BytesIO(encoded.data)) as im:
        im.thumbnail((24, 24))
        assert im.size == (24, 16)


def test_other_files_fall_through_to_their_plugins(crop):
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "PNG")
    with Image.open(buffer) as im:
        assert im.format == "PNG"


def test_a_malformed_gsi_raises_bitstream_error(encoded):
    broken = bytearray(encoded.data)
    broken[-1] ^= 0xFF
    with pytest.raises(codec.BitstreamError, match="crc32"):
        Image.open(io.BytesIO(bytes(broken)))
    with pytest.raises(ValueError, match="length"):
        Image.open(io.BytesIO(encoded.data[:40]))


@pytest.mark.parametrize("size", [(-math.inf, -math.inf), (math.nan, 10), (0, 10), (-5, 10), (10,)])
def test_draft_refuses_a_size_that_is_not_two_positive_numbers(encoded, size):
    with Image.open(io.BytesIO(encoded.data)) as im:
        with pytest.raises(ValueError, match="draft size must be two finite numbers > 0"):
            im.draft("RGB", size)
        assert im.size == (96, 64)  # left as it was


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_open_reads_only_the_declared_length(encoded):
    junk = b"\0" * (8 << 20)
    stream = _CountingStream(encoded.data + junk)
    with pytest.raises(codec.BitstreamError, match="length"):  # bytes after the file: still refused
        Image.open(stream)
    assert stream.bytes_read <= len(encoded.data) + 64  # the header, the declared length, one more byte
    stream = _CountingStream(encoded.data)
    with Image.open(stream) as im:
        assert np.array_equal(np.asarray(im), codec.decode(encoded.data))


def test_a_header_claiming_more_than_the_file_holds_is_refused(encoded):
    with pytest.raises(codec.BitstreamError, match="length"):
        Image.open(io.BytesIO(encoded.data[:-1]))


def test_save_refuses_an_iteration_count_past_the_library_cap(crop, tmp_path):
    for call in (lambda: Image.fromarray(crop).save(tmp_path / "x.gsi", iterations=10**12),
                 lambda: codec.encode(crop, 1.0, iterations=10**12)):
        with pytest.raises(ValueError, match=f"at most codec.MAX_ITERATIONS \\({codec.MAX_ITERATIONS}\\)"):
            call()
    assert codec.EncodeOptions(iterations=codec.MAX_ITERATIONS).steps(64, 64) == codec.MAX_ITERATIONS
