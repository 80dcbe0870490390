"""Optional API keys: when ``GSIC_API_KEYS`` or ``GSIC_API_KEYS_FILE`` is set, the encode, decode, compare, job
and metrics routes need ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; otherwise 401 problem+json.
Off when neither is set.

Keys are held as SHA-256 digests: an entry ``sha256:<hex>`` is one already, so neither the environment nor the
key file need hold a key itself (``gsic hash-key`` prints the entry for a key). A plain, unsalted SHA-256 is
the right tool here, unlike for passwords: an API key is a long random token (``gsic hash-key --new`` makes
one with 256 bits), so a stolen digest cannot be inverted by guessing, and a slow salted hash would only add
its cost to every request. Every presented key is compared with every digest by ``hmac.compare_digest``, so
the answer's timing says nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import send_problem

# Routes a key guards; liveness, readiness, the web page, the docs and the schema stay open.
PROTECTED = ("/encode", "/decode", "/compare", "/jobs", "/metrics")
PREFIX = "sha256:"
_DIGEST = re.compile(r"sha256:[0-9a-fA-F]{64}")
# Where the key a request was let in with is left for the routes (``scope["state"]``): the per-client
# job limits count by it.
CLIENT_KEY = "api_key_digest"


class ApiKeysInvalid(ValueError):
    """GSIC_API_KEYS or GSIC_API_KEYS_FILE cannot be used; ``gsic serve`` refuses to start."""


def key_entry(key: str) -> str:
    """The line that lets ``key`` in: ``sha256:<hex>``."""
    return PREFIX + _key_digest(key).hex()


def _key_digest(key: str) -> bytes:  # what a key is held and compared as
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


def key_digests(spec: str) -> list[bytes]:
    """``GSIC_API_KEYS``: comma-separated keys, or ``sha256:<hex>`` digests of keys."""
    digests = []
    for entry in (part.strip() for part in spec.split(",")):
        if entry.startswith(PREFIX):
            digests.append(_digest(entry, "GSIC_API_KEYS"))
        elif entry:
            digests.append(_key_digest(entry))
    return digests


def key_file_digests(path: Path) -> list[bytes]:
    """``GSIC_API_KEYS_FILE``: one ``sha256:<hex>`` per line; blank lines and ``#`` comments are skipped.
    Read once at start (a restart picks up changes)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeysInvalid(f"GSIC_API_KEYS_FILE {path} cannot be read: {exc}") from None
    digests = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            digests.append(_digest(entry, f"GSIC_API_KEYS_FILE {path} line {number}"))
    if not digests:
        raise ApiKeysInvalid(f"GSIC_API_KEYS_FILE {path} holds no key digest: every request would be refused")
    return digests


def _digest(entry: str, where: str) -> bytes:
    if not _DIGEST.fullmatch(entry):
        # The entry itself is not echoed: a key pasted where its digest belongs must not reach a log.
        raise ApiKeysInvalid(f"{where}: not a key digest (sha256: and 64 hex digits; `gsic hash-key` prints one)")
    return bytes.fromhex(entry[len(PREFIX):])


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, digests: list[bytes]) -> None:
        self.app = app
        self.digests = digests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not any(path == p or path.startswith(p + "/") for p in PROTECTED):
            await self.app(scope, receive, send)
            return
        digest = self._match(Headers(scope=scope))
        if digest is not None:
            scope.setdefault("state", {})[CLIENT_KEY] = digest.hex()
            await self.app(scope, receive, send)
            return
        await send_problem(send, 401, "unauthorized", "this route needs an API key: Authorization: Bearer <key> "
                           "or X-API-Key: <key>", ((b"www-authenticate", b'Bearer realm="gsic"'),))

    def _match(self, headers: Headers) -> bytes | None:
        """The digest of the presented key when it is a known one."""
        authorization = headers.get("authorization", "")
        presented = authorization[7:] if authorization[:7].lower() == "bearer " else headers.get("x-api-key", "")
        digest = _key_digest(presented)
        matches = [hmac.compare_digest(digest, known) for known in self.digests]  # all of them, no early exit
        return digest if presented and any(matches) else None
