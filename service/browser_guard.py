"""Defences against hostile web pages open in a browser that can reach the service.

* **DNS rebinding** (``HostCheckMiddleware``): a page on ``evil.example`` whose name is re-pointed at
  127.0.0.1 talks to a loopback server as if it were its own origin; its requests still carry
  ``Host: evil.example``. Bound to loopback, or wherever ``GSIC_ALLOWED_HOSTS`` is set, only ``localhost``,
  ``127.0.0.1``, ``[::1]`` (any port) and the names in ``GSIC_ALLOWED_HOSTS`` are served; others get 400
  ``host_not_allowed``. Bound elsewhere without the setting (a container, behind a proxy) nothing is checked.
  The loopback names stay allowed everywhere: a rebinding page cannot send them (its own name is in Host),
  and a container's health check uses them.
* **Cross-site posts** (``OriginCheckMiddleware``): any page may make a browser POST a form (or a fetch
  "simple request") to the service. A POST, PUT, PATCH or DELETE whose ``Origin`` (or, without one, the
  origin of its ``Referer``) is neither the service's own nor in ``GSIC_ALLOWED_ORIGINS`` gets 403
  ``cross_origin``. Requests with neither header (curl, SDKs, anything not a browser) pass: a browser
  always sends ``Origin`` on a cross-origin POST.

Both answer problem+json, unlike Starlette's TrustedHostMiddleware (plain text).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import send_problem

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def split_list(spec: str | None) -> list[str]:
    """A comma-separated setting as its entries, lower-cased (host names and origins are case-insensitive)."""
    return [entry.strip().lower() for entry in (spec or "").split(",") if entry.strip()]


def host_name(authority: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``[::1]``."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[:authority.find("]") + 1] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _is_loopback(address: str | None) -> bool:
    if address is None:
        return False
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.configured = bool(allowed_hosts)
        self.allowed = frozenset(host_name(h) for h in allowed_hosts) | LOOPBACK_NAMES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        checked = self.configured or _is_loopback(server[0] if server else None)
        if scope["type"] != "http" or not checked:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host is not None and host_name(host) in self.allowed:
            await self.app(scope, receive, send)
            return
        await send_problem(send, 400, "host_not_allowed", "this server does not serve the host name in the "
                           "request's Host header (add it to GSIC_ALLOWED_HOSTS if it should)")


class OriginCheckMiddleware:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None and headers.get("referer") is not None:
            parts = urlsplit(headers["referer"])
            origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
        if origin is None or self._allowed(origin.strip().lower(), headers.get("host", "").lower()):
            await self.app(scope, receive, send)
            return
        await send_problem(send, 403, "cross_origin", f"a {scope['method']} from a page of another origin "
                           f"({origin[:100]}) is refused; GSIC_ALLOWED_ORIGINS lists the origins allowed")

    def _allowed(self, origin: str, host: str) -> bool:
        if origin in self.allowed:
            return True
        # The service's own origin: the authority the browser addressed, as its Host header says. The scheme is
        # not compared, so a TLS proxy in front (an https page, an http hop to us) still counts as the same.
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host
