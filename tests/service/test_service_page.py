"""The page's server side: GET / and its static files, offline /docs, POST /compare, and their metrics."""

import io
import re

import numpy as np
from PIL import Image

import codec
from svc_helpers import assert_problem, image_bytes, metric


def test_page_and_static_files_need_nothing_from_outside(idle_client):
    page = idle_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert sorted(assets) == ["/static/app.js", "/static/style.css"]
    for text in [page.text] + [idle_client.get(asset).text for asset in assets]:
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//|url\(\s*['\"]?(?:https?:)?//|import\s+.*https?:", text)


def test_head_of_the_page_answers_like_get(idle_client):
    page, head = idle_client.get("/"), idle_client.head("/")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == page.headers["content-type"]
    assert head.headers["content-length"] == str(len(page.content))


def test_docs_are_served_from_package_assets(idle_client):
    docs = idle_client.get("/docs")
    assert docs.status_code == 200
    urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]|url: ['"]([^'"]+)['"]""", docs.text)
    urls = [a or b for a, b in urls]
    assert "/openapi.json" in urls and "/docs/assets/swagger-ui-bundle.js" in urls
    assert all(url.startswith("/") for url in urls), urls
    bundle = idle_client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


def test_docs_and_schema_have_their_own_route_in_metrics(idle_client):
    for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css", "/", "/static/app.js"):
        assert idle_client.get(path).status_code == 200
    text = idle_client.get("/metrics").text
    for route in ("/docs", "/openapi.json", "/docs/assets/{path:path}", "/", "/static/{path:path}"):
        assert metric(text, f'gsic_http_requests_total{{method="GET",route="{route}",status="200"}}') == 1
    assert 'route="unmatched",status="200"' not in text


def test_compare_gives_the_best_jpeg_and_webp_within_the_size(idle_client, kodak_crop):
    response = idle_client.post("/compare", files={"file": ("crop.png", kodak_crop, "image/png")},
                                data={"max_bytes": "900"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"], body["max_bytes"]) == (96, 64, 900)
    original = np.asarray(Image.open(io.BytesIO(kodak_crop)).convert("RGB"))
    for rival in body["rivals"]:
        assert rival["fits"] and rival["bytes"] <= 900 and rival["bpp"] == rival["bytes"] * 8 / (96 * 64)
        buffer = io.BytesIO()
        Image.fromarray(original).save(buffer, rival["format"].upper(), quality=rival["quality"])
        assert len(buffer.getvalue()) == rival["bytes"]
        decoded = np.asarray(Image.open(buffer).convert("RGB"))
        assert rival["psnr"] == codec.psnr(original, decoded)
        bigger = io.BytesIO()
        Image.fromarray(original).save(bigger, rival["format"].upper(), quality=rival["quality"] + 1)
        assert len(bigger.getvalue()) > 900  # the next quality up would not fit
    assert [r["format"] for r in body["rivals"]] == ["jpeg", "webp"]


def test_compare_says_when_a_format_cannot_get_that_small(idle_client, kodak_crop):
    body = idle_client.post("/compare", files={"file": ("crop.png", kodak_crop, "image/png")},
                            data={"max_bytes": "50"}).json()
    assert [(r["format"], r["fits"], r["quality"]) for r in body["rivals"]] == [("jpeg", False, 1), ("webp", False, 0)]


def test_compare_refuses_bad_input_with_problems(idle_client, kodak_crop):
    not_image = idle_client.post("/compare", files={"file": ("x.html", b"<html></html>", "text/html")},
                                 data={"max_bytes": "100"})
    assert not_image.status_code == 415 and not_image.json()["code"] == "unsupported_image"
    no_size = idle_client.post("/compare", files={"file": ("crop.png", kodak_crop, "image/png")})
    assert no_size.status_code == 422 and no_size.json()["code"] == "invalid_request"
    zero = idle_client.post("/compare", files={"file": ("crop.png", kodak_crop, "image/png")}, data={"max_bytes": "0"})
    assert zero.status_code == 422


def test_compare_refuses_a_side_webp_cannot_hold_with_a_413(idle_client):
    for width, height in ((16384, 2), (2, 16384)):  # within GSIC_MAX_PIXELS and the .gsi format's sides
        response = idle_client.post("/compare", files={"file": ("wide.png", image_bytes(width, height), "image/png")},
                                    data={"max_bytes": "1000"})
        body = assert_problem(response, 413, "image_too_large")
        assert f"{width}x{height}" in body["message"] and "16383" in body["message"]
    edge = idle_client.post("/compare", files={"file": ("edge.png", image_bytes(16383, 2), "image/png")},
                            data={"max_bytes": "100000"})
    assert edge.status_code == 200 and edge.json()["width"] == 16383
