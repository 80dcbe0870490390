"""Encode jobs: their states, the stored record, and the resource the API shows."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

from pydantic import BaseModel, Field

from codec import EncodeOptions


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


def client_params(options: EncodeOptions) -> dict:
    """The options a client sets, as stored with the job and shown in it (method and device are the
    server's: the default method, and the worker's device)."""
    return {"bpp": options.bpp, "preset": options.preset, "iterations": options.iterations, "seed": options.seed}


@dataclass(frozen=True)
class Submission:
    """A validated upload, ready to be queued."""

    image: bytes
    image_format: str
    width: int
    height: int
    params: EncodeOptions
    fingerprint: str  # sha256 of the upload and its parameters, for Idempotency-Key checks
    idempotency_key: str | None = None
    client: str | None = None  # who GSIC_CLIENT_MAX_QUEUED / _RUNNING count it for (service.deps.ClientDep)


@dataclass
class JobRecord:
    """A job as the queue backend stores it; timestamps are Unix seconds."""

    id: str
    status: JobStatus
    params: EncodeOptions
    width: int
    height: int
    input_bytes: int
    input_format: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    progress_iteration: int = 0
    progress_total: int | None = None
    progress_psnr: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    result_bytes: int | None = None
    result_bpp: float | None = None
    result_psnr: float | None = None
    result_n_gaussians: int | None = None
    result_seconds: float | None = None
    result_device: str | None = None
    expires_at: float | None = None  # finished_at + retention
    client: str | None = None  # Submission.client
    result_sha256: str | None = None  # result_digest of the stored result


def result_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


KEY_CLIENT = "key:"  # the prefix of a client that is an API key (service.deps.ClientDep)


def visible_to(record: JobRecord, client: str) -> bool:
    """Whether ``client`` may see the job: one submitted with an API key is that key's alone; one submitted
    while keys were off is anyone's (then nobody has an identity to scope it by)."""
    return record.client is None or not record.client.startswith(KEY_CLIENT) or record.client == client


def idempotency_scope(client: str, key: str | None) -> str | None:
    """The Idempotency-Key as stored: under an API key it is that key's own, so another key's replay neither
    finds the job nor learns that the key was used."""
    if key is None or not client.startswith(KEY_CLIENT):
        return key
    return f"{client}/{key}"


# ---- the API resource -------------------------------------------------------------------------------------


class JobProgress(BaseModel):
    iteration: int = Field(description="Optimisation iterations done so far.")
    total: int | None = Field(description="Iterations the encoder plans to run (null until it starts).")
    fraction: float = Field(ge=0, le=1, description="iteration / total, 1 once the job succeeded.")


class JobError(BaseModel):
    code: str = Field(description="Stable machine-readable tag, e.g. encode_failed, worker_lost.")
    message: str


class JobResult(BaseModel):
    bytes: int = Field(description="Size of the .gsi bitstream.")
    bpp: float = Field(description="Achieved bits per pixel.")
    psnr: float = Field(description="PSNR of the decoded bitstream against the upload, dB.")
    n_gaussians: int
    seconds: float = Field(description="Encode wall time.")
    device: str
    url: str = Field(description="Where to GET the bitstream.")


class JobParameters(BaseModel):
    bpp: float | None
    preset: str | None
    iterations: int | None
    seed: int


class Job(BaseModel):
    """An encode job. Poll it until ``status`` is succeeded, failed or canceled."""

    id: str
    status: JobStatus
    progress: JobProgress
    psnr: float | None = Field(description="PSNR reached so far (during the encode), or the final one.")
    width: int
    height: int
    parameters: JobParameters
    cancel_requested: bool = Field(description="A DELETE asked a running encode to stop; it stops at its "
                                   "next progress report.")
    attempts: int = Field(description="Times a worker started this job (more than 1 after a restart).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None = Field(description="When the result stops being served (410 after).")
    error: JobError | None
    result: JobResult | None


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: a lossless PSNR is reported as a large finite number."""
    if value is None:
        return None
    return 999.0 if math.isinf(value) else float(value)


def job_resource(record: JobRecord) -> Job:
    total = record.progress_total
    if record.status is JobStatus.succeeded:
        fraction = 1.0
    elif total:
        fraction = min(1.0, max(0.0, record.progress_iteration / total))
    else:
        fraction = 0.0
    result = None
    if record.status is JobStatus.succeeded and record.result_bytes is not None:
        result = JobResult(bytes=record.result_bytes, bpp=record.result_bpp, psnr=_finite(record.result_psnr),
                           n_gaussians=record.result_n_gaussians or 0, seconds=record.result_seconds or 0.0,
                           device=record.result_device or "", url=f"/jobs/{record.id}/result")
    error = None
    if record.error_code is not None:
        error = JobError(code=record.error_code, message=record.error_message or "")
    psnr = record.result_psnr if record.status is JobStatus.succeeded else record.progress_psnr
    return Job(
        id=record.id,
        status=record.status,
        progress=JobProgress(iteration=record.progress_iteration, total=total, fraction=fraction),
        psnr=_finite(psnr),
        width=record.width,
        height=record.height,
        parameters=JobParameters(**client_params(record.params)),
        cancel_requested=record.cancel_requested,
        attempts=record.attempts,
        created_at=_time(record.created_at),
        started_at=_time(record.started_at),
        finished_at=_time(record.finished_at),
        expires_at=_time(record.expires_at),
        error=error,
        result=result,
    )
