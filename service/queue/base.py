"""The queue interface the routes talk to.

The routes only ever call these coroutines, so another backend (e.g. Redis + arq with GPU worker processes
elsewhere) can replace the embedded one without touching them: it stores the same ``JobRecord`` fields and
raises the same exceptions.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from service.jobs import JobRecord, JobStatus, Submission


class QueueError(Exception):
    pass


class QueueFull(QueueError):
    def __init__(self, depth: int, retry_after: int):
        super().__init__(f"the queue is full ({depth} jobs waiting)")
        self.depth = depth
        self.retry_after = retry_after


class ClientLimit(QueueError):
    """This client has GSIC_CLIENT_MAX_QUEUED jobs waiting already."""

    def __init__(self, queued: int, retry_after: int):
        super().__init__(f"you have {queued} jobs waiting, as many as this server queues for one client "
                         "(GSIC_CLIENT_MAX_QUEUED)")
        self.queued = queued
        self.retry_after = retry_after


class IdempotencyConflict(QueueError):
    """The Idempotency-Key was used before with a different upload or different parameters."""


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

    @abstractmethod
    async def result(self, job_id: str) -> tuple[JobRecord, bytes]:
        """The bitstream; raises JobNotFound, ResultNotReady or ResultExpired."""

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


def retry_after_estimate(record: JobRecord | None, mean_seconds: float, workers: int) -> int:
    """Seconds until a poll of ``record`` (or a resubmission, for None) is worth it, 1 to 30: from its progress
    while it runs, else from the mean encode time spread over the workers."""
    if record is None or record.status is JobStatus.queued:
        estimate = mean_seconds / max(1, workers)
    else:
        done = record.progress_iteration / record.progress_total if record.progress_total else 0.0
        elapsed = time.time() - (record.started_at or time.time())
        estimate = elapsed * (1 - done) / done if done > 0 else mean_seconds - elapsed
    return int(min(30, max(1, math.ceil(estimate))))
