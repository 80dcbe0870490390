"""Optional API keys (``GSIC_API_KEYS``): when set, the encode, decode, compare, job and metrics routes need
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; otherwise 401 problem+json. Off when unset.

Keys are held as SHA-256 digests (an entry ``sha256:<hex>`` is one already, so the environment need not
hold the key itself) and every presented key is compared with every digest by ``hmac.compare_digest``,
so the answer's timing says nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import PROBLEM_JSON, problem_bytes

# Routes a key guards; liveness, readiness, the web page, the docs and the schema stay open.
PROTECTED = ("/encode", "/decode", "/compare", "/jobs", "/metrics")


def key_digests(spec: str) -> list[bytes]:
    """``GSIC_API_KEYS``: comma-separated keys, or ``sha256:<hex>`` digests of keys."""
    digests = []
    for entry in (part.strip() for part in spec.split(",")):
        if entry.startswith("sha256:"):
            digests.append(bytes.fromhex(entry[len("sha256:"):]))
        elif entry:
            digests.append(hashlib.sha256(entry.encode()).digest())
    return digests


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, digests: list[bytes]) -> None:
        self.app = app
        self.digests = digests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not any(path == p or path.startswith(p + "/") for p in PROTECTED):
            await self.app(scope, receive, send)
            return
        if self._allowed(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        body = problem_bytes(401, "unauthorized", "this route needs an API key: Authorization: Bearer <key> "
                                                  "or X-API-Key: <key>")
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="gsic"')]})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, headers: Headers) -> bool:
        authorization = headers.get("authorization", "")
        presented = authorization[7:] if authorization[:7].lower() == "bearer " else headers.get("x-api-key", "")
        digest = hashlib.sha256(presented.encode()).digest()
        matches = [hmac.compare_digest(digest, known) for known in self.digests]  # all of them, no early exit
        return bool(presented) and any(matches)
