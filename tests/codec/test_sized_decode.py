"""Decoding at another size or a region, rendered from the Gaussians (codec.decode width/height/scale/box)."""

import numpy as np
import pytest

import codec
from codec.decode.decoder import GAUSSIAN_COST


def area_downsample(pixels: np.ndarray, factor: int) -> np.ndarray:
    h, w = pixels.shape[0] // factor, pixels.shape[1] // factor
    blocks = pixels[: h * factor, : w * factor].astype(np.float64).reshape(h, factor, w, factor, 3)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


@pytest.fixture(scope="module")
def full(encoded) -> np.ndarray:
    return codec.decode(encoded.data)


# Measured on this fixture (PSNR against the area-downsampled full decode): half size 53.0 dB (49.7 dB with
# plain point sampling, no widening), quarter size 52.1 dB (39.1 dB without); Pillow's Lanczos resize of the
# full decode scores 50.4 dB at half size. 2x then area-downsampled: 53.7 dB; a 2x zoomed box: 54.9 dB.
@pytest.mark.parametrize("factor", [2, 4])
def test_a_smaller_decode_is_close_to_an_area_downsample_of_the_full_decode(encoded, full, factor):
    small = codec.decode(encoded.data, scale=1 / factor)
    assert small.shape == (64 // factor, 96 // factor, 3)
    assert codec.psnr(area_downsample(full, factor), small) > 46


def test_double_size_area_downsampled_is_close_to_the_full_decode(encoded, full):
    double = codec.decode(encoded.data, width=192, height=128)
    assert double.shape == (128, 192, 3)
    assert codec.psnr(full, area_downsample(double, 2)) > 46


@pytest.mark.parametrize("method", ["default", "paper"])  # accumulated sum and ordered alpha blending
def test_box_decode_is_the_same_crop_of_the_full_decode(crop, method):
    data = codec.encode(crop, 1.0, method=method, iterations=20)
    box = (17, 9, 71, 50)
    region = codec.decode(data, box=box)
    assert np.array_equal(region, codec.decode(data)[9:50, 17:71])


def test_box_and_size_together_zoom_into_a_region(encoded, full):
    zoomed = codec.decode(encoded.data, box=(48, 32, 96, 64), scale=2)
    assert zoomed.shape == (64, 96, 3)
    assert codec.psnr(full[32:64, 48:96], area_downsample(zoomed, 2)) > 46


def test_one_side_keeps_the_aspect_and_decoded_size_agrees(encoded):
    header = codec.inspect(encoded.data)
    assert codec.decoded_size(header, width=48) == (48, 32)
    assert codec.decoded_size(header, height=16, box=(0, 0, 48, 64)) == (12, 16)
    assert codec.decode(encoded.data, width=48).shape == (32, 48, 3)


@pytest.mark.parametrize(("options", "field"), [
    ({"width": 0}, "width"),
    ({"height": 2.5}, "height"),
    ({"scale": 0.0}, "scale"),
    ({"scale": float("nan")}, "scale"),
    ({"scale": 2, "width": 10}, "scale"),
    ({"box": (0, 0, 97, 64)}, "box"),
    ({"box": (10, 10, 10, 20)}, "box"),
    ({"box": (1, 2, 3)}, "box"),
    ({"box": "left"}, "box"),
    ({"width": 10**9, "height": 10**9}, "size"),
    ({"scale": 1e30}, "size"),
])
def test_bad_options_raise_a_typed_error_naming_the_option(encoded, options, field):
    with pytest.raises(codec.DecodeOptionError) as caught:
        codec.decode(encoded.data, **options)
    assert caught.value.field == field and isinstance(caught.value, ValueError)


def test_the_pixel_limit_applies_to_the_asked_size(encoded):
    assert codec.decode(encoded.data, max_pixels=96 * 64).shape == (64, 96, 3)
    with pytest.raises(codec.DecodeOptionError, match="more than the 6144 pixels"):
        codec.decode(encoded.data, scale=2, max_pixels=96 * 64)


def test_the_evaluation_limit_applies_to_the_asked_size(encoded):
    # Room for the 1x render (about 12 Gaussian-pixel pairs per pixel), not for 8x (64 times the pixels).
    limit = encoded.n_gaussians * GAUSSIAN_COST + 3 * 96 * 64 * 8
    codec.decode(encoded.data, max_evaluations=limit)
    with pytest.raises(codec.DecodeLimitError, match="Gaussian-pixel evaluations") as info:
        codec.decode(encoded.data, scale=8, max_evaluations=limit)
    assert info.value.field == "evaluations"
