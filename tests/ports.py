"""A free loopback TCP port, for the tests that start a server of their own (service, Redis, container)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now; another process may still take it before the caller binds it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
