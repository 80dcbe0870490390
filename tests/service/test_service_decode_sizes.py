"""POST /decode?width=&height=&scale=&box=: sized and region decodes over HTTP, and their limits."""

import io

import numpy as np
import pytest
from PIL import Image

import codec
from svc_helpers import REPO


def png_pixels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def test_sized_and_region_decodes_match_the_library(idle_client, bitstream):
    half = idle_client.post("/decode?width=32", content=bitstream)
    assert np.array_equal(png_pixels(half), codec.decode(bitstream, width=32))
    assert (half.headers["x-gsic-width"], half.headers["x-gsic-output-width"]) == ("64", "32")
    assert half.headers["x-gsic-output-height"] == "24"
    region = idle_client.post("/decode?box=8,4,40,36&scale=2", content=bitstream)
    assert np.array_equal(png_pixels(region), codec.decode(bitstream, box=(8, 4, 40, 36), scale=2))
    assert png_pixels(region).shape == (64, 64, 3)


@pytest.mark.parametrize(("query", "code", "field"), [
    ("box=0,0,65,48", "invalid_parameters", "box"),
    ("box=1,2,3", "invalid_parameters", "box"),
    ("box=a,b,c,d", "invalid_parameters", "box"),
    ("width=10&scale=2", "invalid_parameters", "scale"),
    ("width=0", "invalid_request", None),
    ("scale=nan", "invalid_request", None),
])
def test_bad_size_options_are_422_problems(idle_client, bitstream, query, code, field):
    response = idle_client.post(f"/decode?{query}", content=bitstream)
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code and response.json().get("field") == field


def test_the_pixel_limit_applies_to_the_asked_size(make_client, bitstream):
    client = make_client(workers=0, max_pixels=64 * 48)
    assert client.post("/decode", content=bitstream).status_code == 200
    too_big = client.post("/decode?scale=2", content=bitstream)
    assert too_big.status_code == 413 and too_big.json()["code"] == "image_too_large"
    assert "128x96" in too_big.json()["message"]
    small = make_client(workers=0, max_pixels=100, data_dir=client.app.state.settings.data_dir.parent / "small")
    assert small.post("/decode", content=bitstream).status_code == 413
    assert png_pixels(small.post("/decode?width=8", content=bitstream)).shape == (6, 8, 3)  # a thumbnail fits


def test_a_textured_file_decodes_over_http_as_in_the_library(idle_client):
    """Format version 6 (a texture layer) through /decode at full size and shrunk, within the default limits."""
    data = codec.encode(np.asarray(Image.open(REPO / "tests" / "fixtures" / "kodim04_crop256.png").convert("RGB")), bpp=0.5,
                        iterations=30)
    assert codec.inspect(data).version == 6
    assert np.array_equal(png_pixels(idle_client.post("/decode", content=data)), codec.decode(data))
    assert np.array_equal(png_pixels(idle_client.post("/decode?width=100", content=data)), codec.decode(data, width=100))
