"""The Redis queue (``GSIC_QUEUE_URL=redis://...``): jobs live in Redis, arq hands them to ``gsic worker``
processes on any number of hosts, and any number of API replicas serve the same jobs.

An API process is stateless: every answer is read from Redis, so progress, cancels, Idempotency-Keys, the
queue depth and the workers' heartbeats are the same whichever replica a request reaches. It runs no encode
unless ``GSIC_WORKERS`` asks for some (they are then the same ``EncodeWorker`` a ``gsic worker`` runs).
Uploads and results travel through Redis: an upload is capped by ``GSIC_MAX_UPLOAD_BYTES``, a result is a
few KB, and an upload is dropped as soon as its job ends.
"""

from __future__ import annotations

import functools
import logging
import time

import redis.exceptions
from arq.connections import ArqRedis

from service.jobs import JobRecord, JobStatus, Submission
from service.metrics import Metrics
from service.queue.base import JobNotFound, JobQueue, QueueStats, QueueUnavailable, SubmitOutcome, WorkerInfo, \
    retry_after_estimate
from service.queue.encoding import EncodeFn, worker_devices
from service.queue.redis_store import RedisJobStore
from service.queue.worker import ENCODE_FUNCTION, EncodeWorker, connect, worker_name
from service.settings import Settings

log = logging.getLogger("gsic.service.queue")

_FORGET_DEAD_WORKERS = 3600.0  # a dead worker stays listed (alive: false) this long


def _reaching_redis(method):
    """A Redis that cannot be reached answers 503 (QueueUnavailable), not 500."""
    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("Redis unreachable: %s", exc)
            raise QueueUnavailable(f"the job queue cannot be reached: {exc}") from None

    return wrapper


class RedisQueue(JobQueue):
    def __init__(self, settings: Settings, metrics: Metrics, *, encode: EncodeFn | None = None):
        if not settings.queue_url:
            raise ValueError("the Redis queue needs GSIC_QUEUE_URL")
        self.settings = settings
        self.metrics = metrics
        self._encode = encode
        self._pool: ArqRedis | None = None
        self._store: RedisJobStore | None = None
        self._encoders: list[EncodeWorker] = []
        self._mean_seconds: float | None = None  # the workers' running mean, as last read from Redis
        self._alive_workers = 0

    @property
    def store(self) -> RedisJobStore:
        if self._store is None:
            raise RuntimeError("the queue is not started")
        return self._store

    async def start(self) -> None:
        self._pool = await connect(self.settings)
        self._store = RedisJobStore(self._pool, self.settings.retention_seconds)
        devices = worker_devices(self.settings.device, self.settings.workers) if self.settings.workers else []
        self._encoders = [EncodeWorker(self.settings, device, worker_name(i), encode=self._encode)
                          for i, device in enumerate(devices)]
        for encoder in self._encoders:
            await encoder.start()
        log.info("Redis queue: %d encode workers in this process", len(devices))

    async def stop(self) -> None:
        for encoder in self._encoders:
            await encoder.forget()
            await encoder.stop()
        self._encoders.clear()
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
            self._store = None

    @_reaching_redis
    async def submit(self, submission: Submission) -> SubmitOutcome:
        outcome = await self.store.insert(submission, self.settings.queue_size, self.settings.client_max_queued)
        if outcome.created:
            # A crash between the two writes leaves a queued job arq does not know; the workers' sweep repairs it.
            job_id = outcome.record.id
            await self._pool.enqueue_job(ENCODE_FUNCTION, job_id, _job_id=job_id)
        return outcome

    @_reaching_redis
    async def get(self, job_id: str) -> JobRecord:
        record = await self.store.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    @_reaching_redis
    async def _result_bytes(self, job_id: str) -> bytes | None:
        return await self.store.blob(job_id, "result")

    @_reaching_redis
    async def cancel(self, job_id: str) -> JobRecord:
        before = await self.store.request_cancel(job_id)
        if before is None:
            raise JobNotFound(job_id)
        if before is JobStatus.queued:
            self.metrics.jobs_finished.labels(JobStatus.canceled.value).inc()
        return await self.get(job_id)

    @_reaching_redis
    async def stats(self) -> QueueStats:
        counts = await self.store.counts()
        self._mean_seconds = await self.store.mean_encode_seconds()
        return QueueStats(depth=counts.get("queued", 0), by_state=counts)

    @_reaching_redis
    async def workers(self) -> list[WorkerInfo]:
        now = time.time()
        out = []
        for name, beat in sorted((await self.store.worker_beats()).items()):
            silent = now - beat["seen_at"]
            if silent > _FORGET_DEAD_WORKERS:
                await self.store.forget_worker(name)
                continue
            out.append(WorkerInfo(name=name, device=beat["device"], alive=silent < self.settings.worker_lease_seconds,
                                  busy_with=beat.get("busy_with")))
        self._alive_workers = sum(w.alive for w in out)
        return out

    def retry_after(self, record: JobRecord | None = None) -> int:
        return retry_after_estimate(record, self._mean_seconds, self._alive_workers)
