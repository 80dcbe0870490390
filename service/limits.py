"""Request body cap, enforced while the body streams in (413 as soon as it is exceeded)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import send_problem


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passes the cap; the middleware answers 413."""


class BodyLimitMiddleware:
    """Caps every request body at ``max_bytes``.

    A declared ``Content-Length`` above the cap is refused before any byte is read; otherwise the bytes are
    counted as they arrive and the request is cut off with 413 at the first chunk past the cap, whoever is
    reading (our handlers or the multipart parser, whose own error answer is replaced by the 413).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.max_bytes} bytes"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, message)
            return

        received = 0
        exceeded = False
        answered = False  # our 413 went out
        app_started = False  # the app's own response went out

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge()
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal answered, app_started
            if exceeded and not app_started:
                # Whatever the app answers after its read failed (e.g. "error parsing the body"), say 413.
                if not answered:
                    answered = True
                    await _send_413(send, message)
                return
            if msg["type"] == "http.response.start":
                app_started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            if not answered and not app_started:
                answered = True
                await _send_413(send, message)


async def _send_413(send: Send, message: str) -> None:
    await send_problem(send, 413, "body_too_large", message, ((b"connection", b"close"),))
