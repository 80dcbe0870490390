"""Against a real uvicorn on 127.0.0.1: the Host check against DNS rebinding, the Origin check against cross-site
posts (both problem+json), and the per-client queued limit counted by the caller's address."""

from __future__ import annotations

import httpx
import pytest

from svc_helpers import LiveServer, assert_problem, image_bytes

ALLOWED_HOST = "gsic.example"
ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("front-door")
    with LiveServer(root / "data", root / "server.log", "/healthz", GSIC_WORKERS="0", GSIC_CLIENT_MAX_QUEUED="1",
                    GSIC_ALLOWED_HOSTS=f"{ALLOWED_HOST}, other.example",
                    GSIC_ALLOWED_ORIGINS=f"{ALLOWED_ORIGIN}/") as live:
        yield live


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("host", ["rebound.example", "rebound.example:{port}", "127.0.0.1.rebound.example",
                                  "localhost.rebound.example:{port}"])
def test_a_foreign_host_name_is_refused(server, http, host):
    """A page on rebound.example whose DNS name now points at 127.0.0.1 sends Host: rebound.example."""
    for path in ("/healthz", "/", "/jobs/x"):
        response = http.get(path, headers={"Host": host.format(port=server.port)})
        assert_problem(response, 400, "host_not_allowed")
    assert_problem(http.post("/decode", content=b"x", headers={"Host": host.format(port=server.port)}),
                   400, "host_not_allowed")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:8000", "LOCALHOST:1",
                                  ALLOWED_HOST, f"{ALLOWED_HOST}:443", "Other.Example:80"])
def test_loopback_names_and_allowed_hosts_are_served(server, http, host):
    assert http.get("/healthz", headers={"Host": host.format(port=server.port)}).status_code == 200


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:1"},  # another port is another origin
                                     {"Referer": "https://evil.example/page.html"}])
def test_a_cross_origin_post_or_delete_is_refused(http, headers):
    for method, path in (("POST", "/decode"), ("POST", "/encode"), ("DELETE", "/jobs/x")):
        assert_problem(http.request(method, path, headers=headers), 403, "cross_origin")
    assert http.get("/healthz", headers=headers).status_code == 200  # reading is not what it guards


def test_own_and_allowed_origins_and_non_browsers_pass(server, http):
    own = {"Origin": server.url}
    for headers in (own, {"Origin": ALLOWED_ORIGIN}, {"Referer": f"{server.url}/"}, {}):
        assert_problem(http.post("/decode", content=b"", headers=headers), 422, "empty_bitstream")
    # The page's origin as a browser names it through an allowed host (a proxy in front, say).
    via_proxy = {"Host": ALLOWED_HOST, "Origin": f"https://{ALLOWED_HOST}"}
    assert_problem(http.post("/decode", content=b"", headers=via_proxy), 422, "empty_bitstream")


def test_the_queued_limit_counts_per_address(server, http):
    png = image_bytes(16, 16)
    files = {"file": ("a.png", png, "image/png")}
    assert http.post("/encode", files=files, data={"iterations": "10"}).status_code == 202
    assert_problem(http.post("/encode", files=files, data={"iterations": "11"}), 429, "client_limit")
    # Another loopback address is another client (127.0.0.0/8 all reach the server bound to 127.0.0.1).
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, timeout=30, transport=transport) as other:
        assert other.post("/encode", files=files, data={"iterations": "12"}).status_code == 202


def test_allowed_hosts_are_checked_wherever_they_are_set(make_client, tmp_path):
    """Bound elsewhere than loopback (the test client's server is "testserver"): off unless configured."""
    assert make_client(workers=0).get("/healthz", headers={"Host": "anything.example"}).status_code == 200
    client = make_client(workers=0, allowed_hosts=ALLOWED_HOST, data_dir=tmp_path / "configured")
    assert client.get("/healthz", headers={"Host": f"{ALLOWED_HOST}:8000"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "127.0.0.1:8000"}).status_code == 200  # a health check
    assert_problem(client.get("/healthz", headers={"Host": "anything.example"}), 400, "host_not_allowed")
