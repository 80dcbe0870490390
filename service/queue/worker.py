"""Encode workers of the Redis queue: ``gsic worker`` runs one per device, on any host that reaches Redis.

Each ``EncodeWorker`` is an arq worker taking one job at a time; the encode runs on a thread of its own
(CUDA contexts and numba caches live for the whole process, nothing forks per job) while the event loop,
every ``lease / 4`` seconds, stores the progress, renews the job's lease and reads its cancel flag, all in one
Redis round-trip. How the guarantees come about:

* at-least-once: arq keeps a job in its queue until it ends and marks a started one with an in-progress key.
  arq sizes that key to the job timeout (none here, so 10 s); we renew it to ``GSIC_WORKER_LEASE_SECONDS``
  while the encode runs. A worker killed with SIGKILL stops renewing, the key lapses and another worker
  starts the job again within the lease plus one poll (0.2 s).
* attempts: arq counts the starts of a job; after ``GSIC_MAX_ATTEMPTS`` starts that did not end (the worker
  died each time) the next start ends the job as failed ``worker_lost``. A clean shutdown (SIGTERM) stops the
  encode at its next progress report and puts the job back without counting the start.
* a result is written by the attempt that owns the job, once (``RedisJobStore.finish``); a later duplicate
  start of a finished job does nothing.
* per-client running limit: the claim script refuses a job whose client has ``GSIC_CLIENT_MAX_RUNNING`` jobs
  running (counted from the store, over every worker); the job goes back to arq's queue for a second, and
  that start is not counted as an attempt.
* cancel: DELETE sets a flag in the job's record; the lease renewal reads it and the encode stops at its
  next progress report. (arq's own abort cancels the asyncio task, which cannot stop an encode thread.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import arq
import numpy as np
import redis.exceptions
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, retry_key_prefix
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus as ArqJobStatus

import codec
from service.jobs import JobRecord, JobStatus, result_digest
from service.queue.encoding import EncodeFn, EncodeOutcome, LiveProgress, run_encode
from service.queue.redis_store import ClientBusy, RedisJobStore
from service.settings import Settings

log = logging.getLogger("gsic.service.worker")

ENCODE_FUNCTION = "gsic_encode"
_SPARE_TRIES = 3  # arq's own try limit sits above ours, so our code always sees the last start and ends it
_POLL_DELAY = 0.2
_SWEEP_INTERVAL = 30.0
_ORPHAN_AGE = 30.0
_CLIENT_BUSY_DEFER = 1.0  # seconds before a job held back by its client's running limit is offered again
_CONNECT_DELAYS = (1.0,) * 5  # seconds between the tries to reach Redis at start
_REPOLL_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds before polling again after Redis failed it, then the last


# A small gradient (the codec takes arrays as well as encoded files).
_WARM_UP_IMAGE = np.ascontiguousarray(np.stack(np.mgrid[0:8, 0:8].astype(np.uint8) * 32, axis=-1)[..., [0, 1, 1]])


async def connect(settings: Settings) -> ArqRedis:
    """A client of GSIC_QUEUE_URL whose every call gives up after GSIC_REDIS_TIMEOUT seconds (TimeoutError),
    tried a few times at start, for a Redis that starts alongside."""
    pool = ArqRedis.from_url(settings.queue_url, socket_timeout=settings.redis_timeout,
                             socket_connect_timeout=settings.redis_timeout)
    for delay in _CONNECT_DELAYS:
        try:
            await pool.ping()
            return pool
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("Redis at %s does not answer (%s); trying again in %.0f s", settings.queue_url, exc, delay)
            await asyncio.sleep(delay)
    await pool.ping()  # the last try: its error is the caller's
    return pool


class EncodeWorker:
    """One arq worker, one job at a time, on one device."""

    def __init__(self, settings: Settings, device: str, name: str, *, encode: EncodeFn | None = None):
        self.settings, self.device, self.name = settings, device, name
        self._encode = encode or codec.encode_with_report
        self._lease = settings.worker_lease_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gsic-{name}")
        self._pool: ArqRedis | None = None
        self._store: RedisJobStore | None = None
        self._worker: arq.Worker | None = None
        self._tasks: list[asyncio.Task] = []
        self._polling = False  # arq's polling loop runs: the worker takes jobs, so it may say it is alive
        self.busy_with: str | None = None

    async def start(self) -> None:
        self._pool = await connect(self.settings)
        self._store = RedisJobStore(self._pool, self.settings.retention_seconds)
        function = arq.func(self._job, name=ENCODE_FUNCTION, max_tries=self.settings.max_attempts + _SPARE_TRIES)
        self._worker = arq.Worker(functions=[function], redis_pool=self._pool, handle_signals=False, max_jobs=1,
                                  job_timeout=None, keep_result=0, poll_delay=_POLL_DELAY, log_results=False)
        await self._warm_up()
        await self._beat()  # visible in /readyz once it can take a job at full speed
        self._polling = True
        self._tasks = [asyncio.create_task(self._poll(), name=f"{self.name}-poll"),
                       asyncio.create_task(self._every(self._lease / 4, self._beat_while_polling),
                                           name=f"{self.name}-beat"),
                       asyncio.create_task(self._every(_SWEEP_INTERVAL, self._sweep), name=f"{self.name}-sweep")]
        log.info("worker %s started on %s", self.name, self.device)

    @property
    def polling(self) -> asyncio.Task:
        """The task that polls for jobs; it ends only with an error Redis did not cause (or at stop)."""
        return self._tasks[0]

    async def _poll(self) -> None:
        """arq's polling loop, started again whenever Redis fails it: arq's loop ends at the first connection
        error, and a worker whose loop has ended takes no job again, whatever its heartbeat says."""
        failures = 0
        while True:
            self._polling = True
            started = time.monotonic()
            try:
                await self._worker.async_run()
                raise RuntimeError("arq's polling loop returned")  # it only returns in burst mode
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                self._polling = False
                if time.monotonic() - started > _REPOLL_DELAYS[-1]:  # it polled a while: a new outage
                    failures = 0
                delay = _REPOLL_DELAYS[min(failures, len(_REPOLL_DELAYS) - 1)]
                failures += 1
                log.warning("worker %s: polling for jobs failed (%s: %s); polling again in %.1f s", self.name,
                            type(exc).__name__, exc, delay)
            except BaseException:
                self._polling = False
                raise
            await asyncio.sleep(delay)

    async def _warm_up(self) -> None:
        """One tiny encode before the first job: kernels compile (or load from the cache) now, not while a job's
        lease runs, so a job is not taken over just because its worker was compiling."""
        params = codec.EncodeOptions(preset="high", iterations=2)
        outcome = await asyncio.get_running_loop().run_in_executor(self._executor, partial(
            run_encode, self._encode, _WARM_UP_IMAGE, params, device=self.device, max_pixels=self.settings.max_pixels,
            progress=lambda p: True, canceled=lambda: False, job_id="warm-up"))
        if outcome.status is not JobStatus.succeeded:
            raise RuntimeError(f"worker {self.name}: the warm-up encode on {self.device} failed: {outcome.message}")

    async def stop(self) -> None:
        """Stop taking jobs; a running encode stops at its next progress report and goes back in the queue."""
        for task in self._tasks[1:]:
            task.cancel()
        if self._worker is not None:
            await self._worker.close()  # cancels the running job (see _job) and waits for it, closes the pool
        for task in self._tasks:
            task.cancel()  # the polling task, if it waits to poll again
        await asyncio.gather(*self._tasks, return_exceptions=True)  # a failed polling task was reported already
        self._tasks.clear()
        self._executor.shutdown(wait=True)
        log.info("worker %s stopped", self.name)

    async def forget(self) -> None:
        """Take this worker off the registry (a clean stop; a dead one just stops beating)."""
        with contextlib.suppress(redis.exceptions.RedisError):
            await self._store.forget_worker(self.name)

    # ---- one job ------------------------------------------------------------------------------------------

    async def _job(self, ctx: dict, job_id: str) -> None:
        attempt = int(ctx["job_try"])
        owner = f"{self.name}/{attempt}"
        try:
            before = await self._store.claim(job_id, owner, attempt, self.settings.client_max_running)
        except ClientBusy:  # its client has GSIC_CLIENT_MAX_RUNNING jobs encoding: others' jobs go first
            await self._store.uncount_start(retry_key_prefix + job_id)
            raise arq.Retry(defer=_CLIENT_BUSY_DEFER) from None
        if before is None or before.finished:
            return  # canceled while queued, or ended by an earlier attempt whose acknowledgement was lost
        record = await self._store.get(job_id)
        if record.cancel_requested:  # canceled while running on a worker that then died
            await self._finish(job_id, EncodeOutcome(JobStatus.canceled, code="canceled",
                                                     message="canceled while running"), owner)
            return
        if attempt > self.settings.max_attempts:  # this start only ends it, so it does not count
            await self._store.finish(job_id, JobStatus.failed, owner, attempts=attempt - 1, error_code="worker_lost",
                                     error_message=f"the worker died during this encode {attempt - 1} times")
            log.info("job %s failed: worker_lost", job_id)
            return
        image = await self._store.blob(job_id, "input")
        if image is None:
            await self._finish(job_id, EncodeOutcome(JobStatus.failed, code="input_missing",
                                                     message="the uploaded image was not found"), owner)
            return
        self.busy_with = job_id
        try:
            await self._encode_and_record(record, owner, image)
        finally:
            self.busy_with = None

    async def _encode_and_record(self, record: JobRecord, owner: str, image: bytes) -> None:
        live = LiveProgress()
        call = partial(run_encode, self._encode, image, record.params, device=self.device,
                       max_pixels=self.settings.max_pixels, progress=live.report, canceled=live.cancel.is_set,
                       job_id=record.id)
        encode = asyncio.get_running_loop().run_in_executor(self._executor, call)
        lost = False
        try:
            while True:
                done, _ = await asyncio.wait({encode}, timeout=self._lease / 4)
                lost = await self._sync(record.id, owner, live)
                if done or lost:
                    break
        except asyncio.CancelledError:  # the worker is shutting down
            live.stop.set()
            outcome = await encode
            if outcome.status is None:
                await self._store.requeue(record.id, owner, retry_key_prefix + record.id)
                log.info("job %s put back in the queue (shutdown)", record.id)
                raise  # arq keeps the job in its queue
            await self._finish(record.id, outcome, owner, live)
            return
        if lost:
            live.stop.set()
            log.warning("job %s: another attempt owns it now; this one stops", record.id)
            await self._wait_for_new_owner(record.id)
            return
        outcome = await encode
        if outcome.status is JobStatus.succeeded and live.cancel.is_set():  # canceled during the last interval
            outcome = EncodeOutcome(JobStatus.canceled, code="canceled", message="canceled while running")
        await self._finish(record.id, outcome, owner, live)

    async def _wait_for_new_owner(self, job_id: str) -> None:
        """arq drops a job from its queue when a start of it returns. This start lost the job (it stalled past
        its lease and another worker took over), so it returns only once the job has ended; if the new owner
        died too (nobody holds the lease), it hands the job back to arq's queue instead."""
        while True:
            record = await self._store.get(job_id)
            if record is None or record.status.finished:
                return
            if not await self._pool.exists(in_progress_key_prefix + job_id):
                raise arq.Retry()  # stays queued; the next start counts as an attempt, as a death should
            await asyncio.sleep(self._lease / 4)

    async def _sync(self, job_id: str, owner: str, live: LiveProgress) -> bool:
        """Store the progress, renew the lease, pass a cancel on; True when another attempt owns the job now."""
        try:
            state = await self._store.update_progress(job_id, owner, in_progress_key_prefix + job_id, self._lease,
                                                      live.iteration, live.total, live.psnr)
        except redis.exceptions.RedisError:
            log.exception("job %s: could not renew its lease", job_id)
            return False
        if state == 0:
            live.cancel.set()
        return state < 0

    async def _finish(self, job_id: str, outcome: EncodeOutcome, owner: str,
                      live: LiveProgress | None = None) -> None:
        if outcome.status is JobStatus.succeeded:
            report = outcome.report
            written = await self._store.finish(
                job_id, JobStatus.succeeded, owner, result=report.data, result_bytes=len(report.data),
                result_bpp=report.bpp, result_psnr=report.psnr, result_n_gaussians=report.n_gaussians,
                result_seconds=report.seconds, result_device=str(report.device),
                result_sha256=result_digest(report.data),
                progress_iteration=live.final_iteration, progress_total=live.total)
            if written:
                await self._store.record_encode_seconds(outcome.seconds)
        else:
            written = await self._store.finish(job_id, outcome.status, owner, error_code=outcome.code,
                                               error_message=outcome.message)
        log.info("job %s %s%s", job_id, outcome.status.value, "" if written else " (not recorded: not ours)")

    # ---- background ---------------------------------------------------------------------------------------

    async def _every(self, seconds: float, action) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except redis.exceptions.RedisError:
                log.exception("worker %s: %s failed", self.name, action.__name__)

    async def _beat_while_polling(self) -> None:
        if self._polling:
            await self._beat()

    async def _beat(self) -> None:
        await self._store.heartbeat(self.name, {"device": self.device, "busy_with": self.busy_with,
                                                "host": socket.gethostname(), "pid": os.getpid()})

    async def _sweep(self) -> None:
        """Repair what a crash between two writes can leave: a queued job that arq does not know (the API died
        between storing it and handing it to arq), a running one that arq dropped (past its own try limit)."""
        for job_id in await self._store.queued_ids():
            record = await self._store.get(job_id)
            if record is None or time.time() - record.created_at < _ORPHAN_AGE:
                continue
            if await ArqJob(job_id, self._pool).status() is ArqJobStatus.not_found:
                await self._pool.enqueue_job(ENCODE_FUNCTION, job_id, _job_id=job_id)
                log.warning("job %s was queued but unknown to arq: handed to arq again", job_id)
        for job_id in await self._store.running_ids():
            owner = await self._store.owner(job_id)
            if owner and await ArqJob(job_id, self._pool).status() is ArqJobStatus.not_found:
                await self._store.finish(job_id, JobStatus.failed, owner, error_code="worker_lost",
                                         error_message="the job was dropped by the queue after its worker died")


def worker_name(index: int) -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{index}"


async def run_workers(settings: Settings, devices: list[str], names: list[str]) -> int:
    """``gsic worker``: run one EncodeWorker per device until SIGTERM or SIGINT (exit status 0), or until one
    cannot poll for jobs any more (1: the service manager should start the process again)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    workers = [EncodeWorker(settings, device, name) for device, name in zip(devices, names)]
    for worker in workers:
        await worker.start()
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, *(worker.polling for worker in workers)}, return_when=asyncio.FIRST_COMPLETED)
    failed = [worker for worker in workers if worker.polling.done()]
    for worker in failed:
        log.error("worker %s cannot poll for jobs: %r; exiting with status 1", worker.name,
                  worker.polling.exception())
    log.info("shutting down: running encodes stop at their next progress report and go back in the queue")
    stopped.cancel()
    for worker in workers:
        await worker.forget()
    await asyncio.gather(*(worker.stop() for worker in workers))
    return 1 if failed else 0
