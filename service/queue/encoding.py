"""Running one encode job: the single place where a queue backend calls the codec.

Both the embedded worker threads and the Redis workers (``service.queue.worker``) call ``run_encode``; it
turns whatever the encoder does (a report, a cancellation, a bad image, a bug) into an ``EncodeOutcome`` that
the backend records. ``LiveProgress`` is what a running encode has reported and what it is told (cancel,
stop), and ``worker_devices`` where the workers run.
"""

from __future__ import annotations

import logging
import threading
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


class LiveProgress:
    """What a running encode has reported (polls read it between the backend's writes to its store), and what
    it is told: ``cancel`` (a DELETE) or ``stop`` (a shutdown, or another attempt owns the job now)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.iteration = 0
        self.total: int | None = None
        self.psnr: float | None = None
        self.cancel = threading.Event()
        self.stop = stop if stop is not None else threading.Event()

    def report(self, p: codec.Progress) -> bool:
        """The encoder's progress callback: False stops the encode."""
        self.iteration, self.total, self.psnr = int(p.iteration), int(p.total), _float_or_none(p.psnr)
        return not (self.cancel.is_set() or self.stop.is_set())

    @property
    def final_iteration(self) -> int:
        """The iteration a succeeded job shows: all it planned."""
        return self.total or self.iteration


def _float_or_none(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def worker_devices(device: str, workers: int | None) -> list[str]:
    """The device of each worker: one per GPU (or one on CPU) unless ``workers`` says how many."""
    if device in ("auto", "cuda"):
        import torch

        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if device == "cuda" and not gpus:
            raise RuntimeError("GSIC_DEVICE=cuda but no CUDA device is visible")
        devices = gpus or ["cpu"]
    else:
        devices = [device]
    if workers is None:
        return devices
    return [devices[i % len(devices)] for i in range(workers)]
