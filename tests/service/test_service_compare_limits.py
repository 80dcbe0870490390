"""POST /compare's limits: a pixel cap checked before decoding, a deadline, slots of its own (a /decode never
waits behind comparisons) and a share per client."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from service.routes import compare as compare_route
from svc_helpers import assert_problem, image_bytes, metric


def _compare(client, data: bytes, headers=None):
    return client.post("/compare", files={"file": ("image.png", data, "image/png")}, data={"max_bytes": "5000"},
                       headers=headers or {})


def test_an_image_past_the_compare_cap_is_413_before_it_is_decoded(make_client, kodak_crop):
    client = make_client(workers=0)
    flat = io.BytesIO()
    Image.fromarray(np.zeros((4096, 4096), np.uint8)).save(flat, "PNG")  # a few KB, 16 M pixels
    started = time.monotonic()
    body = assert_problem(_compare(client, flat.getvalue()), 413, "image_too_large")
    assert time.monotonic() - started < 2  # refused from the header, not after a bisection of encodes
    assert "4096x4096" in body["message"] and "GSIC_COMPARE_MAX_PIXELS" in body["message"]
    small = make_client(workers=0, compare_max_pixels=96 * 64 - 1, data_dir=client.app.state.settings.data_dir / "b")
    assert_problem(_compare(small, kodak_crop), 413, "image_too_large")
    assert _compare(client, kodak_crop).status_code == 200


def test_a_compare_past_the_deadline_is_503_and_its_slot_comes_back(make_client):
    client = make_client(workers=0, decode_timeout=0.05)
    response = _compare(client, image_bytes(1024, 1024))  # about half a second of encodes here
    assert_problem(response, 503, "compare_timeout")
    assert response.headers["retry-after"] == "1"
    deadline = time.monotonic() + 30
    while metric(client.get("/metrics").text, "gsic_compare_slots_busy") != 0:
        assert time.monotonic() < deadline, "the compare slot was not given back after the work ended"
        time.sleep(0.05)


def test_compares_have_slots_of_their_own_and_a_share_per_client(make_client, monkeypatch, kodak_crop, bitstream):
    entered, release = threading.Semaphore(0), threading.Event()
    measure = compare_route.rivals_at_size

    def held(pixels, max_bytes):  # a comparison that takes until the test lets it go (10 s at most)
        entered.release()
        release.wait(10)
        return measure(pixels, max_bytes)

    monkeypatch.setattr(compare_route, "rivals_at_size", held)
    client = make_client(workers=0, api_keys="key-a,key-b", decode_concurrency=1, compare_concurrency=2)
    a, b = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
    with ThreadPoolExecutor(2) as pool:
        try:
            first = pool.submit(_compare, client, kodak_crop, a)
            assert entered.acquire(timeout=30)
            body = assert_problem(_compare(client, kodak_crop, a), 429, "client_limit")
            assert body["limit"] == "GSIC_CLIENT_MAX_COMPARES"
            other = pool.submit(_compare, client, kodak_crop, b)  # another client is not held back
            assert entered.acquire(timeout=30)
            assert metric(client.get("/metrics", headers=a).text, "gsic_compare_slots_busy") == 2
            started = time.monotonic()
            decoded = client.post("/decode", content=bitstream, headers=a)  # every compare slot is taken
            assert decoded.status_code == 200 and time.monotonic() - started < 5
        finally:
            release.set()
        assert first.result().status_code == 200 and other.result().status_code == 200
    assert _compare(client, kodak_crop, a).status_code == 200  # the client's share was given back
