"""Inputs: whatever Pillow opens becomes 8-bit RGB; anything else gets a clear ImageError."""

import io

import numpy as np
import pytest
from PIL import Image

from bench import load_memory
from codec import ImageError, load_image


def _png(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def test_rgb_png_bytes_and_array_agree(crop):
    assert np.array_equal(load_image(_png(Image.fromarray(crop))), crop)
    assert np.array_equal(load_image(crop), crop)


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    pixels = load_image(_png(Image.fromarray(gray, "L")))
    assert pixels.shape == (8, 8, 3) and np.array_equal(pixels[..., 0], gray) and np.array_equal(pixels[..., 2], gray)


def test_sixteen_bit_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    pixels = load_image(_png(Image.fromarray(values)))
    assert pixels[0, :, 0].tolist() == [0, 1, 128, 255]


def test_one_channel_inputs_of_every_depth_convert_as_before_across_row_blocks():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(700, 1600), dtype=np.uint16)  # several row blocks
    expected = np.round(values / 65535 * 255).astype(np.uint8)
    for source in (_png(Image.fromarray(values)), values, values[:, :, None]):
        pixels = load_image(source)
        assert pixels.shape == (700, 1600, 3) and pixels.flags.c_contiguous
        assert all(np.array_equal(pixels[..., c], expected) for c in range(3))
    floats = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan, np.inf, -np.inf]], dtype=np.float32)
    tiff = io.BytesIO()
    Image.fromarray(floats).save(tiff, "TIFF")
    for source in (tiff.getvalue(), floats):
        assert load_image(source)[0, :, 1].tolist() == [0, 0, 128, 255, 255, 0, 255, 0]
    ints = np.array([[0, 257, 65535]], dtype=np.int32)  # mode I within 16 bits: scaled by 65535
    tiff = io.BytesIO()
    Image.fromarray(ints).save(tiff, "TIFF")
    assert load_image(tiff.getvalue())[0, :, 2].tolist() == [0, 1, 255]
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(load_image(gray), np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize("case", ["gray16", "float32"])
def test_loading_a_deep_one_channel_image_costs_a_few_bytes_per_pixel(case):
    # bench.load_memory: the peak RSS of the load above the RSS before it, in a fresh process.
    measured = load_memory.measure_in_child(case, 2048)
    assert measured["peak_bytes_per_pixel"] < 24, measured  # float64 RGB copies cost about 100 before


def test_alpha_is_composited_over_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red stays red
    rgba[0, 1] = [255, 0, 0, 0]  # transparent becomes white
    pixels = load_image(_png(Image.fromarray(rgba, "RGBA")))
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[0, 1].tolist() == [255, 255, 255]
    half = np.array([[[1.0, 0.0, 0.0, 0.5]]])  # a float array's alpha, half red over white
    assert load_image(half)[0, 0].tolist() == [255, 128, 128]


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    pixels = load_image(buffer.getvalue())
    assert pixels.shape == (4, 2, 3)
    assert pixels[0, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("data, code", [
    (b"", "empty_image"),
    (b"<html><body>hi</body></html>", "unsupported_image"),
    (b"PK\x03\x04" + bytes(40), "unsupported_image"),
])
def test_non_images_are_rejected(data, code):
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert info.value.code == code


def test_truncated_png_is_corrupt(crop):
    data = _png(Image.fromarray(crop))
    with pytest.raises(ImageError) as info:
        load_image(data[: len(data) // 2])
    assert info.value.code == "corrupt_image"


def test_pixel_cap_is_checked_before_decoding(crop):
    with pytest.raises(ImageError) as info:
        load_image(_png(Image.fromarray(crop)), max_pixels=100)
    assert info.value.code == "image_too_large"


@pytest.mark.parametrize("shape", [(3, 20000, 3), (16385, 2)])
def test_a_side_the_format_cannot_hold_is_refused_before_encoding(shape):
    with pytest.raises(ImageError) as info:
        load_image(np.zeros(shape, np.uint8))
    assert info.value.code == "image_too_large"


def test_a_wide_image_fails_at_once_not_after_training():
    import time

    import codec

    started = time.perf_counter()
    with pytest.raises(ImageError, match="16384"):
        codec.encode(Image.new("RGB", (20000, 3)), 1.0, iterations=50)
    assert time.perf_counter() - started < 5
