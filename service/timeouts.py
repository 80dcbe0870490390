"""Connection timeouts uvicorn lacks: a client must send a whole request (head and body) within
``read_timeout`` seconds of the connection opening or of the previous response, or the connection closes;
and a response the client stops reading for ``write_timeout`` seconds is cut off.

uvicorn only times out idle keep-alive connections; a client sending its headers, or its body, a byte at a
time kept a connection (and, for a body, a route's upload read) open indefinitely. Once the request has
arrived the clock stops: the app's own time (an upload check, a decode) is not counted here. Likewise a
client that never read its response held the connection, and the route's send, for ever: the transport's
buffer fills, uvicorn pauses the writer, and nothing resumes it. Paused writing for ``write_timeout`` now
aborts the connection (a plain close would wait to flush the very buffer that the client does not read).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class TimeoutH11Protocol(H11Protocol):
    read_timeout: float = 60.0  # both set per server by ``with_timeouts``
    write_timeout: float = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._arm_read_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm_read_deadline()  # the whole request is in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_read_deadline()  # the next request on this connection gets its own time

    def pause_writing(self) -> None:
        super().pause_writing()
        self._disarm_write_deadline()
        self._write_deadline = self.loop.call_later(self.write_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_write_deadline()  # the client reads: the clock starts again at the next pause

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        self._disarm_write_deadline()
        super().connection_lost(exc)

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        self._cancel("_read_deadline")

    def _disarm_write_deadline(self) -> None:
        self._cancel("_write_deadline")

    def _cancel(self, timer_name: str) -> None:
        timer = getattr(self, timer_name, None)  # None too before connection_made has run
        if timer is not None:
            timer.cancel()
            setattr(self, timer_name, None)

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            self.transport.close()


def with_timeouts(read: float, write: float) -> type[TimeoutH11Protocol]:
    """The protocol class for uvicorn's ``http=`` with this server's timeouts."""
    return type("TimeoutH11Protocol", (TimeoutH11Protocol,), {"read_timeout": float(read),
                                                              "write_timeout": float(write)})
