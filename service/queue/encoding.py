"""Running one encode job: the single place where a queue backend calls the codec.

Both the embedded worker threads and the Redis workers (``service.worker``) call ``run_encode``; it turns
whatever the encoder does (a report, a cancellation, a bad image, a bug) into an ``EncodeOutcome`` that
the backend records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import codec
from service.jobs import JobStatus

log = logging.getLogger("gsic.service.queue")

EncodeFn = Callable[..., "codec.EncodeReport"]


@dataclass(frozen=True)
class EncodeOutcome:
    """``status`` None: the encode was stopped for a shutdown (the job goes back in the queue)."""

    status: JobStatus | None
    report: codec.EncodeReport | None = None
    code: str | None = None
    message: str | None = None
    seconds: float = 0.0


def run_encode(encode: EncodeFn, image, params: codec.EncodeOptions, *, device: str, max_pixels: int,
               progress: Callable[[codec.Progress], bool], canceled: Callable[[], bool], job_id: str) -> EncodeOutcome:
    """Encode ``image`` (the upload's bytes, or anything the codec reads); ``progress`` returning False stops
    it, ``canceled()`` then says whether that was a cancel (else a shutdown)."""
    started = time.perf_counter()
    try:
        report = encode(image, options=params.replace(device=device), progress=progress, max_pixels=max_pixels)
    except codec.EncodeCancelled:
        if canceled():
            return EncodeOutcome(JobStatus.canceled, code="canceled", message="canceled while running")
        return EncodeOutcome(None)
    except codec.ImageError as exc:
        return EncodeOutcome(JobStatus.failed, code=exc.code, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - an encoder bug fails the job, not the worker
        log.exception("job %s: encode failed", job_id)
        return EncodeOutcome(JobStatus.failed, code="encode_failed", message=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    if canceled():  # the DELETE came after the last progress report
        return EncodeOutcome(JobStatus.canceled, code="canceled", message="canceled while running")
    return EncodeOutcome(JobStatus.succeeded, report=report, seconds=seconds)


def progress_float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
