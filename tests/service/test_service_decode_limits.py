"""POST /decode holds every file to the server's decode limits (GSIC_DECODE_MAX_PIXELS / _EVALUATIONS)."""

import io

import numpy as np
from PIL import Image

from codec.format.bitstream import write_bitstream
from codec.decode.decoder import GAUSSIAN_COST
from svc_helpers import assert_problem
from tests.codec.hostile import DIR, gaussians


def test_a_file_past_the_evaluation_budget_is_413_before_rendering(idle_client):
    response = idle_client.post("/decode", content=(DIR / "over_evaluations.gsi").read_bytes())
    body = assert_problem(response, 413, "decode_too_costly")
    assert body["field"] == "evaluations"


def test_issue_14s_86_byte_file_is_refused_at_once(idle_client):
    """2^20 Gaussians at 4096 x 4096 with no payload: refused from the header, not decoded from zeros."""
    response = idle_client.post("/decode", content=(DIR / "claims_max_n.gsi").read_bytes())
    assert assert_problem(response, 422, "invalid_bitstream")["field"] == "payload_length"


def test_the_budget_is_a_setting(make_client, tmp_path):
    data = write_bitstream(gaussians(64, 48, 40, 30.0))  # each covers the picture: 40 x (3072 + GAUSSIAN_COST)
    cost = 40 * (64 * 48 + GAUSSIAN_COST)
    assert make_client(workers=0, decode_max_evaluations=cost).post("/decode", content=data).status_code == 200
    small = make_client(workers=0, decode_max_evaluations=cost - 1, data_dir=tmp_path / "small")
    assert_problem(small.post("/decode", content=data), 413, "decode_too_costly")


def test_the_output_limit_is_a_setting(make_client):
    data = write_bitstream(gaussians(64, 48, 0, 1.0))
    assert_problem(make_client(workers=0, decode_max_pixels=64 * 48 - 1).post("/decode", content=data),
                   413, "image_too_large")


def test_a_file_without_gaussians_is_a_black_png(idle_client):
    response = idle_client.post("/decode", content=write_bitstream(gaussians(40, 24, 0, 1.0)))
    assert response.status_code == 200, response.text
    pixels = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert pixels.shape == (24, 40, 3) and not pixels.any()
    assert response.headers["x-gsic-n-gaussians"] == "0"
