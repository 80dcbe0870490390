"""What one request may cost: the body cap (413 while the body streams in), the CPU slots that decodes and
upload checks run in (with /decode's deadline), each client's share of the requests in flight (429), and the
work one encode job may ask for (422)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codec import EncodeOptions
from service.errors import Problem, send_problem

T = TypeVar("T")


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


class CpuSlots:
    """The ``size`` slots (GSIC_DECODE_CONCURRENCY) in which decodes and upload checks run on worker threads.

    A thread cannot be killed, so a request that gives up at its deadline cannot stop its decode, only stop
    waiting for it. The slot therefore stays taken until the thread has really ended: a task of the app's task
    group, not the request, holds it and gives it back then. Abandoned decodes can never add up past ``size``
    threads; later requests wait for a slot (within their own deadline) instead of starting more work. Each
    decode is bounded anyway (GSIC_DECODE_MAX_EVALUATIONS, about half a second of CPU at the default), so an
    abandoned one frees its slot soon. A killable subprocess per slot was the alternative: a process and the
    codec's import (torch, hundreds of MB) per slot, to stop work that is already bounded.
    """

    def __init__(self, size: int, tasks: anyio.abc.TaskGroup) -> None:
        self._limiter = anyio.CapacityLimiter(size)
        self._tasks = tasks

    @property
    def busy(self) -> int:
        """Slots taken now, by waiting requests' threads and by abandoned ones alike."""
        return int(self._limiter.borrowed_tokens)

    async def run(self, func: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """``func(*args)`` on a thread, in a slot; TimeoutError once ``timeout`` seconds have passed, the wait
        for a slot included (the thread, if it started, runs on and keeps its slot until it ends)."""
        outcome: list[tuple[bool, Any]] = []
        finished = anyio.Event()
        with anyio.fail_after(timeout):
            borrower = object()
            await self._limiter.acquire_on_behalf_of(borrower)
            self._tasks.start_soon(self._hold, borrower, func, args, outcome, finished)
            await finished.wait()
        succeeded, value = outcome[0]
        if not succeeded:
            raise value
        return value

    async def _hold(self, borrower: object, func: Callable, args: tuple, outcome: list, finished: anyio.Event) -> None:
        try:
            outcome.append((True, await anyio.to_thread.run_sync(func, *args)))  # not abandoned: waits for the end
        except Exception as exc:  # noqa: BLE001 - handed to the request (if it still waits), never to the group
            outcome.append((False, exc))
        finally:
            self._limiter.release_on_behalf_of(borrower)
            finished.set()


class ClientShare:
    """How many requests of a route each client has in flight: past ``limit`` the next is 429 client_limit.
    Counted in this process, on the event loop (nothing awaits between the check and the count)."""

    def __init__(self, limit: int, setting: str) -> None:
        self.limit, self.setting = limit, setting
        self._in_flight: Counter[str] = Counter()

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        if self._in_flight[client] >= self.limit:
            raise Problem(429, "client_limit", f"this client already has {self.limit} such requests in flight "
                          f"({self.setting}); retry when one has answered", headers={"Retry-After": "1"},
                          limit=self.setting)
        self._in_flight[client] += 1
        try:
            yield
        finally:
            self._in_flight[client] -= 1
            if not self._in_flight[client]:
                del self._in_flight[client]


def check_encode_work(width: int, height: int, params: EncodeOptions, limit: int) -> None:
    """422 ``encode_too_costly`` when pixels x iterations exceeds GSIC_MAX_ENCODE_WORK."""
    steps = params.steps(height, width)
    work = width * height * steps
    if work > limit:
        raise Problem(422, "encode_too_costly", f"{width}x{height} pixels at {steps} iterations "
                      f"is {work} pixel-iterations, more than this server's limit GSIC_MAX_ENCODE_WORK ({limit}); "
                      "ask for fewer iterations or send a smaller image", limit="GSIC_MAX_ENCODE_WORK", work=work,
                      max_work=limit)
