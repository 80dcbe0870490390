"""The embedded queue: a SQLite job store under GSIC_DATA_DIR and encode worker threads in this process.

* Encodes run on worker threads (one per device), never on the event loop, so polls and /decode stay fast.
* On start, jobs that were queued, and jobs that were running when the process died, are queued again
  (a job whose worker died ``max_attempts`` times fails with ``worker_lost`` instead of looping forever).
* A clean shutdown stops a running encode at its next progress report and puts the job back in the queue.
* A lock file keeps a second process from opening the same data dir.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import anyio.to_thread

import codec
from service.jobs import JobRecord, JobStatus, Submission
from service.metrics import Metrics
from service.queue.base import (
    JobNotFound,
    JobQueue,
    QueueStats,
    SubmitOutcome,
    WorkerInfo,
    retry_after_estimate,
    updated_mean,
)
from service.queue.encoding import EncodeFn, LiveProgress, run_encode, worker_devices
from service.queue.lock import DataDirLock
from service.queue.store import STORE_FILE, JobStore
from service.settings import Settings

log = logging.getLogger("gsic.service.queue")

_PROGRESS_WRITE_INTERVAL = 0.5  # seconds between progress rows written to SQLite (polls read live values)
_IDLE_WAIT = 1.0  # a worker re-checks the store at least this often


class EmbeddedQueue(JobQueue):
    def __init__(self, settings: Settings, metrics: Metrics, *, encode: EncodeFn | None = None,
                 devices: list[str] | None = None):
        self.settings = settings
        self.metrics = metrics
        self._encode = encode or codec.encode_with_report
        self._devices = devices if devices is not None else worker_devices(settings.device, settings.workers)
        self._store: JobStore | None = None
        self._lock: DataDirLock | None = None
        self._stopping = threading.Event()
        self._wakeup = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._busy: dict[str, str | None] = {}
        self._live: dict[str, LiveProgress] = {}
        self._live_lock = threading.Lock()
        self._mean_seconds: float | None = None  # of the encodes this process ran, for Retry-After

    # ---- lifecycle ----------------------------------------------------------------------------------------

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the queue is not started")
        return self._store

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._start)

    def _start(self) -> None:
        data_dir = Path(self.settings.data_dir)
        self._lock = DataDirLock(data_dir).acquire()
        self._store = JobStore(data_dir / STORE_FILE, self.settings.retention_seconds)
        recovered = self._store.recover(self.settings.max_attempts)
        self._store.purge_expired()
        log.info("job store %s: %s", data_dir, recovered)
        self._stopping.clear()
        for index, device in enumerate(self._devices):
            name = f"encoder-{index}"
            self._busy[name] = None
            thread = threading.Thread(target=self._work, args=(name, device), name=f"gsic-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        janitor = threading.Thread(target=self._janitor, name="gsic-janitor", daemon=True)
        janitor.start()
        self._threads.append(janitor)

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self._stop)

    def _stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        with self._wakeup:
            self._wakeup.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.warning("a worker did not stop within %.0f s", timeout)
        self._threads.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- the API the routes use ---------------------------------------------------------------------------

    async def submit(self, submission: Submission) -> SubmitOutcome:
        outcome = await anyio.to_thread.run_sync(self.store.insert, submission, self.settings.queue_size,
                                                 self.settings.client_max_queued)
        if outcome.created:
            with self._wakeup:
                self._wakeup.notify()
        return replace(outcome, record=self._with_live(outcome.record, self._live_of(outcome.record.id)))

    async def get(self, job_id: str) -> JobRecord:
        live = self._live_of(job_id)
        record = await anyio.to_thread.run_sync(self.store.get, job_id)
        if record is None:
            raise JobNotFound(job_id)
        return self._with_live(record, live)

    async def _result_bytes(self, job_id: str) -> bytes | None:
        return await anyio.to_thread.run_sync(self.store.blob, job_id, "result")

    async def cancel(self, job_id: str) -> JobRecord:
        live = self._live_of(job_id)
        outcome = await anyio.to_thread.run_sync(self.store.request_cancel, job_id)
        if outcome is None:
            raise JobNotFound(job_id)
        record, before = outcome
        if record.status is JobStatus.running:
            live = live or self._live_of(job_id)  # claimed while the store was read
            if live is not None:
                live.cancel.set()
        elif before is JobStatus.queued:
            self._count_finished(JobStatus.canceled, job_id)
        return self._with_live(record, live)

    async def stats(self) -> QueueStats:
        counts = await anyio.to_thread.run_sync(self.store.counts)
        return QueueStats(depth=counts.get("queued", 0), by_state=counts)

    async def workers(self) -> list[WorkerInfo]:
        threads = {t.name: t for t in self._threads}
        return [WorkerInfo(name=name, device=device, alive=bool(threads.get(f"gsic-{name}")
                                                                  and threads[f"gsic-{name}"].is_alive()),
                           busy_with=self._busy.get(name))
                for name, device in zip(self._busy, self._devices)]

    def retry_after(self, record: JobRecord | None = None) -> int:
        return retry_after_estimate(record, self._mean_seconds, len(self._devices))

    # ---- internals ----------------------------------------------------------------------------------------

    def _live_of(self, job_id: str) -> LiveProgress | None:
        """Taken before the store is read: a job that ends between the read and this lookup would otherwise
        show its stale stored progress (behind what polls already saw) while its record still says running."""
        with self._live_lock:
            return self._live.get(job_id)

    def _with_live(self, record: JobRecord, live: LiveProgress | None) -> JobRecord:
        if record.status is not JobStatus.running or live is None:
            return record  # ended: the store holds the last live progress (written before the final state)
        return replace(record, progress_iteration=live.iteration, progress_total=live.total,
                       progress_psnr=live.psnr, cancel_requested=record.cancel_requested or live.cancel.is_set())

    def _count_finished(self, status: JobStatus, job_id: str) -> None:
        self.metrics.jobs_finished.labels(status.value).inc()
        log.info("job %s %s", job_id, status.value)

    def _janitor(self) -> None:
        interval = min(60.0, max(1.0, self.settings.retention_seconds / 4))
        while not self._stopping.wait(interval):
            try:
                dropped = self.store.purge_expired()
                if dropped:
                    log.info("dropped %d expired results", dropped)
            except Exception:  # noqa: BLE001 - keep the janitor alive whatever happens
                log.exception("purging expired results failed")

    def _work(self, name: str, device: str) -> None:
        log.info("worker %s started on %s", name, device)
        while not self._stopping.is_set():
            try:
                record = self.store.claim_next(self.settings.client_max_running)
            except Exception:  # noqa: BLE001
                log.exception("worker %s could not read the job store", name)
                self._stopping.wait(_IDLE_WAIT)
                continue
            if record is None:
                with self._wakeup:
                    if not self._stopping.is_set():
                        self._wakeup.wait(_IDLE_WAIT)
                continue
            self._busy[name] = record.id
            try:
                self._run(record, device)
            except Exception:  # noqa: BLE001 - a store failure must not kill the worker
                log.exception("worker %s failed to record job %s", name, record.id)
            finally:
                self._busy[name] = None
            with self._wakeup:  # a job a client's running limit held back may be free to run now
                self._wakeup.notify_all()
        log.info("worker %s stopped", name)

    def _run(self, record: JobRecord, device: str) -> None:
        job_id = record.id
        live = LiveProgress(stop=self._stopping)
        with self._live_lock:
            self._live[job_id] = live
        if self._cancel_requested(job_id):  # a DELETE between the claim and now
            live.cancel.set()
        written_at = 0.0

        def progress(p) -> bool:
            nonlocal written_at
            go_on = live.report(p)
            if time.monotonic() - written_at >= _PROGRESS_WRITE_INTERVAL:
                written_at = time.monotonic()
                self.store.update_progress(job_id, live.iteration, live.total, live.psnr)
            return go_on

        try:
            image = self.store.blob(job_id, "input")
            if image is None:
                self.store.finish(job_id, JobStatus.failed, "input_missing", "the uploaded image was not found")
                self._count_finished(JobStatus.failed, job_id)
                return
            outcome = run_encode(self._encode, image, record.params, device=device,
                                 max_pixels=self.settings.max_pixels, progress=progress, job_id=job_id,
                                 canceled=lambda: live.cancel.is_set() or self._cancel_requested(job_id))
            if outcome.status is None:  # shutting down: run it again after the restart
                self.store.requeue(job_id)
                log.info("job %s put back in the queue (shutdown)", job_id)
                return
            if outcome.status is JobStatus.succeeded:
                report = outcome.report
                self.store.finish_succeeded(job_id, report.data, bpp=report.bpp, psnr=report.psnr,
                                            n_gaussians=report.n_gaussians, seconds=report.seconds,
                                            device=str(report.device), iteration=live.final_iteration,
                                            total=live.total)
                self.metrics.encode_seconds.observe(outcome.seconds)
                self._mean_seconds = updated_mean(self._mean_seconds, outcome.seconds)
            else:
                # The last progress the encode reported (polls showed it live) stays in the record: a canceled
                # or failed job's progress must not fall back to the last throttled write.
                self.store.update_progress(job_id, live.iteration, live.total, live.psnr)
                self.store.finish(job_id, outcome.status, outcome.code, outcome.message)
            self._count_finished(outcome.status, job_id)
        finally:
            with self._live_lock:
                self._live.pop(job_id, None)

    def _cancel_requested(self, job_id: str) -> bool:
        record = self.store.get(job_id)
        return record is not None and record.cancel_requested

