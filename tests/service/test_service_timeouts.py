"""Slow-header and slow-body clients are disconnected after GSIC_REQUEST_READ_TIMEOUT, and a client that stops
reading its response after GSIC_RESPONSE_WRITE_TIMEOUT (a live server)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from svc_helpers import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("timeouts")
    with LiveServer(root / "data", root / "server.log", GSIC_WORKERS="0", GSIC_REQUEST_READ_TIMEOUT="1",
                    ready_path="/healthz") as live:
        yield live


def _closed_after(server, chunks: list[bytes], wait: float = 10.0) -> float:
    """Seconds until the server closes a connection that sent ``chunks`` and then nothing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        started = time.monotonic()
        for chunk in chunks:
            sock.sendall(chunk)
        while sock.recv(4096):  # a 408-less close: recv returns b"" once the server hangs up
            pass
        return time.monotonic() - started


def test_a_slow_header_is_disconnected(server):
    assert _closed_after(server, [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"]) < 5


def test_a_slow_body_is_disconnected(server):
    head = b"POST /decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
    assert _closed_after(server, [head, b"GSIC" * 10]) < 5


def test_a_silent_connection_is_disconnected(server):
    assert _closed_after(server, []) < 5


def test_normal_requests_and_keep_alive_still_work(server):
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(0.5)
        assert client.get("/healthz").status_code == 200  # the same connection, within its time


def test_a_client_that_does_not_read_its_response_is_disconnected(tmp_path, bitstream):
    # A 4096-px-wide render, about 5 MB of PNG: more than the kernel's socket buffers take on loopback (3 MB).
    request = b"POST /decode?width=4096 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (
        len(bitstream), bitstream)
    with LiveServer(tmp_path / "data", tmp_path / "server.log", GSIC_WORKERS="0", GSIC_RESPONSE_WRITE_TIMEOUT="1",
                    GSIC_DECODE_MAX_PIXELS=str(4096 * 3072), GSIC_DECODE_MAX_EVALUATIONS=str(10**12),
                    ready_path="/healthz") as live:
        started = time.monotonic()
        full = httpx.post(live.url + "/decode?width=4096", content=bitstream, timeout=60)
        took = time.monotonic() - started
        assert full.status_code == 200 and len(full.content) > 4_000_000
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", live.port))
            sock.sendall(request)
            time.sleep(2 * took + 3)  # the render, then a response nobody reads for longer than the timeout
            received = b""
            try:
                while len(received.partition(b"\r\n\r\n")[2]) < len(full.content) and (chunk := sock.recv(1 << 16)):
                    received += chunk
            except ConnectionResetError:  # the abort's RST
                pass
        body = received.partition(b"\r\n\r\n")[2]
        assert len(body) < len(full.content), "the whole response arrived: the server waited for the reader"
        assert httpx.get(live.url + "/healthz").status_code == 200
