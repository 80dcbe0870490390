"""Slow-header and slow-body clients are disconnected after GSIC_REQUEST_READ_TIMEOUT (a live server)."""

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
