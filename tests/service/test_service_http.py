"""What a client sees at the HTTP level of a live server (uvicorn): connections kept or closed."""

from __future__ import annotations

import http.client

import httpx
import pytest

from svc_helpers import LiveServer, image_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    with LiveServer(root / "data", root / "server.log", GSIC_WORKERS="0", ready_path="/healthz") as live:
        yield live


def _send(conn: http.client.HTTPConnection, request: httpx.Request) -> http.client.HTTPResponse:
    conn.request(request.method, request.url.raw_path.decode(), body=request.read(), headers=dict(request.headers))
    response = conn.getresponse()
    response.read()
    return response


def test_a_refused_compare_keeps_the_connection_alive(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        wide = httpx.Request("POST", server.url + "/compare", data={"max_bytes": "1000"},
                             files={"file": ("wide.png", image_bytes(16384, 2), "image/png")})
        refused = _send(conn, wide)
        assert refused.status == 413 and not refused.will_close
        sock = conn.sock
        again = _send(conn, httpx.Request("GET", server.url + "/healthz"))
        assert again.status == 200 and conn.sock is sock  # the same connection served the next request
    finally:
        conn.close()
