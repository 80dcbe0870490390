"""Every error the service answers is ``application/problem+json`` (RFC 9457) with a stable ``code``.

A problem body looks like::

    {"type": "urn:gsic:problem:body_too_large", "title": "Content Too Large", "status": 413,
     "code": "body_too_large", "message": "the request body is larger than 33554432 bytes"}

and may carry extra members (``field`` for a malformed bitstream, ``errors`` for invalid parameters).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

log = logging.getLogger("gsic.service")

PROBLEM_JSON = "application/problem+json"

# Codes for errors raised by the framework rather than by our own code.
_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "queue_full",
}


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class ProblemDetail(BaseModel):
    """The body of every error response (media type application/problem+json)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str
    message: str


def problem_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": f"urn:gsic:problem:{code}", "title": title, "status": status, "code": code,
            "message": message, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_bytes(status: int, code: str, message: str) -> bytes:
    """The encoded body, for ASGI middleware that answers without a Response object."""
    return bytes(problem_response(status, code, message).body)


async def send_problem(send: Send, status: int, code: str, message: str,
                       headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer with a problem document from ASGI middleware (before any route runs)."""
    body = problem_bytes(status, code, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem answers."""
    return {status: {"model": ProblemDetail, "content": {PROBLEM_JSON: {}},
                     "description": HTTPStatus(status).phrase} for status in statuses}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return problem_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(part) for part in error.get("loc", ())], "type": error.get("type", ""),
                   "msg": error.get("msg", "")} for error in exc.errors()]
        code = "invalid_request"
        # No `file` part, or one without a filename (which the form parser hands over as a plain string).
        if any(e["loc"][-1:] == ["file"] and (e["type"] == "missing" or "UploadFile" in e["msg"]) for e in errors):
            code = "missing_file"
        message = "; ".join(f"{'.'.join(e['loc'][1:]) or e['loc'][0] if e['loc'] else 'request'}: {e['msg']}"
                            for e in errors) or "invalid request"
        return problem_response(422, code, message, errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug by definition
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal_error", "the server failed to handle this request")
