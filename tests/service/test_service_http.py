"""What a client sees at the HTTP level of a live server (uvicorn): connections kept or closed, and which
address the per-client limits count a request for."""

from __future__ import annotations

import http.client

import httpx
import pytest

from svc_helpers import FAST, LiveServer, assert_problem, image_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    with LiveServer(root / "data", root / "server.log", GSIC_WORKERS="0", GSIC_CLIENT_MAX_QUEUED="2",
                    ready_path="/healthz") as live:
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


def _submit(client: httpx.Client, forwarded_for: str) -> httpx.Response:
    return client.post("/encode", files={"file": ("a.png", image_bytes(8, 8), "image/png")}, data=FAST,
                       headers={"X-Forwarded-For": forwarded_for})


def test_forwarded_for_from_an_untrusted_address_is_ignored(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for address in ("198.51.100.1", "198.51.100.2"):
            assert _submit(client, address).status_code == 202
        # Counted as 127.0.0.1 whatever the header says: uvicorn's default trust of loopback is off.
        body = assert_problem(_submit(client, "203.0.113.9"), 429, "client_limit")
        assert body["limit"] == "GSIC_CLIENT_MAX_QUEUED"


def test_forwarded_for_from_a_named_proxy_is_the_client(tmp_path):
    with (LiveServer(tmp_path / "data", tmp_path / "server.log", GSIC_WORKERS="0", GSIC_CLIENT_MAX_QUEUED="1",
                     GSIC_TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1", ready_path="/healthz") as live,
          httpx.Client(base_url=live.url, timeout=60) as client):
        assert _submit(client, "198.51.100.1").status_code == 202
        assert _submit(client, "198.51.100.2").status_code == 202  # another client behind the same proxy
        assert_problem(_submit(client, "198.51.100.1"), 429, "client_limit")


def test_trusted_proxies_must_be_addresses_or_networks():
    from service.settings import Settings

    assert Settings(trusted_proxies=" 10.0.0.0/8,,::1 ").trusted_proxies == "10.0.0.0/8,::1"
    assert Settings(trusted_proxies="").trusted_proxies is None
    with pytest.raises(ValueError, match="'proxy.example' is not an IP address or network"):
        Settings(trusted_proxies="10.0.0.1,proxy.example")
