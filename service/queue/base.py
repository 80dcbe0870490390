"""The queue interface the routes talk to.

The routes only ever call these coroutines, so another backend (e.g. Redis + arq with GPU worker processes
elsewhere) can replace the embedded one without touching them: it stores the same ``JobRecord`` fields and
raises the same exceptions. What both backends do alike lives here: reading a result, the Retry-After
estimate and the running mean of encode times it starts from; a store's insert answers a ``SubmitOutcome``
or raises ``QueueFull``, ``ClientLimit`` or ``IdempotencyConflict`` itself.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from service.jobs import JobRecord, JobStatus, Submission, result_digest


class QueueError(Exception):
    pass


class QueueFull(QueueError):
    def __init__(self, depth: int):
        super().__init__(f"the queue is full ({depth} jobs waiting)")
        self.depth = depth


class ClientLimit(QueueError):
    """This client has GSIC_CLIENT_MAX_QUEUED jobs waiting already."""

    def __init__(self, queued: int):
        super().__init__(f"you have {queued} jobs waiting, as many as this server queues for one client "
                         "(GSIC_CLIENT_MAX_QUEUED)")
        self.queued = queued


class IdempotencyConflict(QueueError):
    """The Idempotency-Key was used before with a different upload or different parameters."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with a different upload or parameters")


class JobNotFound(QueueError):
    pass


class QueueUnavailable(QueueError):
    """The queue's store cannot be reached (e.g. Redis is down); the request may succeed later."""

    retry_after = 5


class ResultNotReady(QueueError):
    def __init__(self, record: JobRecord):
        super().__init__(f"job {record.id} is {record.status.value}")
        self.record = record


class ResultExpired(QueueError):
    def __init__(self, record: JobRecord):
        super().__init__(f"the result of job {record.id} expired")
        self.record = record


class ResultDamaged(QueueError):
    """The stored result no longer matches the digest written with it (the store was damaged)."""

    def __init__(self, record: JobRecord):
        super().__init__(f"the stored result of job {record.id} does not match its digest: the job store is "
                         "damaged, so it is not served")
        self.record = record


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    device: str
    alive: bool
    busy_with: str | None = None  # job id


@dataclass(frozen=True)
class QueueStats:
    depth: int  # jobs waiting
    by_state: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmitOutcome:
    record: JobRecord
    created: bool  # False: an Idempotency-Key replay returned an existing job


class JobQueue(ABC):
    """A durable queue of encode jobs plus the workers that run them."""

    @abstractmethod
    async def start(self) -> None:
        """Open the store, requeue interrupted jobs, start the workers."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop the workers (a running encode is put back in the queue) and close the store."""

    @abstractmethod
    async def submit(self, submission: Submission) -> SubmitOutcome:
        """Queue a job; raises QueueFull, ClientLimit or IdempotencyConflict."""

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord:
        """The job as it is now; raises JobNotFound."""

    async def result(self, job_id: str) -> tuple[JobRecord, bytes]:
        """The bitstream; raises JobNotFound, ResultNotReady, ResultExpired or ResultDamaged."""
        record = await self.get(job_id)
        if record.status is not JobStatus.succeeded:
            raise ResultNotReady(record)
        if record.expires_at is not None and record.expires_at <= time.time():
            raise ResultExpired(record)
        data = await self._result_bytes(job_id)
        if data is None:  # dropped (past retention) between the two reads
            raise ResultExpired(record)
        if record.result_sha256 is not None and result_digest(data) != record.result_sha256:
            raise ResultDamaged(record)
        return record, data

    @abstractmethod
    async def _result_bytes(self, job_id: str) -> bytes | None:
        """The stored bitstream of a succeeded job; None once it has been dropped."""

    @abstractmethod
    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job now, or ask a running one to stop; a finished job is left as it is."""

    @abstractmethod
    async def stats(self) -> QueueStats:
        ...

    @abstractmethod
    async def workers(self) -> list[WorkerInfo]:
        """The encode workers this queue knows of, dead ones (``alive`` False) included while remembered."""

    @abstractmethod
    def retry_after(self, record: JobRecord | None = None) -> int:
        """Seconds a client should wait before polling ``record`` again (or resubmitting, for None)."""


DEFAULT_ENCODE_SECONDS = 5.0  # what Retry-After assumes an encode takes until one has finished


def updated_mean(mean_seconds: float | None, seconds: float) -> float:
    """The running mean of encode wall times (None: none yet) after an encode of ``seconds``; recent encodes
    weigh most, so the estimate follows a change of workload."""
    return seconds if mean_seconds is None else 0.8 * mean_seconds + 0.2 * seconds


def retry_after_estimate(record: JobRecord | None, mean_seconds: float | None, workers: int) -> int:
    """Seconds until a poll of ``record`` (or a resubmission, for None) is worth it, 1 to 30: from its progress
    while it runs, else from the mean encode time (``updated_mean``) spread over the workers."""
    if mean_seconds is None:
        mean_seconds = DEFAULT_ENCODE_SECONDS
    if record is None or record.status is JobStatus.queued:
        estimate = mean_seconds / max(1, workers)
    else:
        done = record.progress_iteration / record.progress_total if record.progress_total else 0.0
        elapsed = time.time() - (record.started_at or time.time())
        estimate = elapsed * (1 - done) / done if done > 0 else mean_seconds - elapsed
    return int(min(30, max(1, math.ceil(estimate))))
