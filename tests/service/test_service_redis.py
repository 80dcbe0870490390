"""The Redis queue (GSIC_QUEUE_URL) through the same routes, against a real redis-server: every state and
answer the embedded queue gives, plus what only a shared queue has (ownership, leases, attempts, the sweep)."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import datetime

import numpy as np
import pytest
import redis
from PIL import Image

import codec
from codec import EncodeOptions
from service.jobs import JobStatus, Submission
from svc_helpers import assert_problem, image_bytes, submit, wait_job


@pytest.fixture
def make_redis_client(make_client, redis_url):
    """``make_redis_client(**settings)``: an app on the Redis queue (no encode worker unless ``workers``)."""
    def make(**overrides):
        return make_client(queue_url=redis_url, **overrides)

    return make


def test_lifecycle_through_redis(make_redis_client, small_png):
    client = make_redis_client(workers=1)
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["devices"] == ["cpu"] and ready["workers"][0]["alive"]
    response = submit(client, small_png)
    assert response.status_code == 202 and int(response.headers["Retry-After"]) >= 1
    job = wait_job(client, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"iteration": 10, "total": 10, "fraction": 1.0} and job["attempts"] == 1
    finished, expires = (datetime.fromisoformat(job[k]) for k in ("finished_at", "expires_at"))
    assert abs((expires - finished).total_seconds() - 86400) < 1
    result = client.get(job["result"]["url"])
    assert result.status_code == 200 and len(result.content) == job["result"]["bytes"]
    original = np.asarray(Image.open(io.BytesIO(small_png)).convert("RGB"))
    assert codec.psnr(original, codec.decode(result.content)) == pytest.approx(job["result"]["psnr"], abs=0.01)
    text = client.get("/metrics").text
    assert 'gsic_jobs{state="succeeded"} 1.0' in text and "gsic_queue_depth 0.0" in text


def test_api_without_workers_queues_dedups_and_pushes_back(make_redis_client, small_png):
    client = make_redis_client(queue_size=2)  # the API alone runs no encode
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["workers"] == []
    key = {"Idempotency-Key": "upload-1"}
    first = submit(client, small_png, headers=key)
    assert submit(client, small_png, headers=key).json()["id"] == first.json()["id"]
    assert_problem(submit(client, image_bytes(16, 16), headers=key), 422, "idempotency_key_reused")
    second = submit(client, small_png)
    assert_problem(submit(client, small_png), 429, "queue_full")
    assert submit(client, small_png, headers=key).json()["id"] == first.json()["id"]  # a replay, while full
    full = submit(client, small_png)
    assert int(full.headers["Retry-After"]) >= 1
    assert ready.json()["queue_depth"] == 0 and client.get("/readyz").json()["queue_depth"] == 2

    canceled = client.delete(f"/jobs/{second.json()['id']}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert canceled.json()["error"]["code"] == "canceled"
    assert client.delete(f"/jobs/{second.json()['id']}").json() == canceled.json()
    assert_problem(client.get(f"/jobs/{second.json()['id']}/result"), 409, "job_not_succeeded")
    assert submit(client, small_png).status_code == 202  # the slot is free again
    for response in (client.get("/jobs/nope"), client.get("/jobs/nope/result"), client.delete("/jobs/nope")):
        assert_problem(response, 404, "job_not_found")


def test_cancel_running_job_and_progress(make_redis_client, kodak_crop):
    client = make_redis_client(workers=1)
    job = submit(client, kodak_crop, iterations="20000").json()
    deadline = time.monotonic() + 60
    while job["progress"]["iteration"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["status"] == "running" and job["progress"]["total"] == 20000 and job["psnr"] is not None
    assert client.get("/readyz").json()["workers"][0]["busy"] is True
    response = client.delete(f"/jobs/{job['id']}")
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    stopped = time.monotonic()
    job = wait_job(client, job["id"], timeout=30)
    assert job["status"] == "canceled" and job["error"]["code"] == "canceled"
    assert time.monotonic() - stopped < 10 and job["progress"]["iteration"] < 20000
    follow = submit(client, image_bytes(16, 16)).json()
    assert wait_job(client, follow["id"])["status"] == "succeeded"


def test_result_expires_and_key_is_forgotten(make_redis_client, small_png):
    client = make_redis_client(workers=1, retention_seconds=1)
    key = {"Idempotency-Key": "short-lived"}
    job = wait_job(client, submit(client, small_png, headers=key).json()["id"])
    assert job["status"] == "succeeded"
    assert client.get(f"/jobs/{job['id']}/result").status_code == 200
    time.sleep(max(0.0, datetime.fromisoformat(job["expires_at"]).timestamp() - time.time()) + 0.2)
    assert_problem(client.get(f"/jobs/{job['id']}/result"), 410, "result_expired")
    assert client.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"  # the record outlives the result
    assert submit(client, small_png, headers=key).json()["id"] != job["id"]  # the key expired with the result


def test_clean_shutdown_puts_the_job_back_without_counting_it(make_redis_client, kodak_crop, redis_url):
    first = make_redis_client(workers=1)
    job_id = submit(first, kodak_crop, iterations="20000").json()["id"]
    wait_job(first, job_id, until=("running",), timeout=60)
    first.__exit__(None, None, None)  # lifespan stop: the encode stops, the job goes back
    second = make_redis_client()
    job = second.get(f"/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["attempts"] == 0 and job["started_at"] is None
    with redis.Redis.from_url(redis_url) as r:
        assert int(r.get(f"arq:retry:{job_id}") or 0) == 0  # nor does arq count it
    assert second.get("/readyz").json()["workers"] == []  # the stopped worker left the registry
    third = make_redis_client(workers=1)
    wait_job(third, job_id, until=("running",), timeout=60)
    assert third.get(f"/jobs/{job_id}").json()["attempts"] == 1
    third.delete(f"/jobs/{job_id}")
    assert wait_job(third, job_id, timeout=30)["status"] == "canceled"


@pytest.mark.parametrize(("earlier_starts", "status", "attempts"), [(1, "succeeded", 2), (3, "failed", 3)])
def test_attempts_after_dead_workers(make_redis_client, redis_url, small_png, earlier_starts, status, attempts):
    """arq counts the starts of a job; starts whose worker died leave it counted (set here as if they had
    happened): a job is run again until GSIC_MAX_ATTEMPTS starts died, then ends failed worker_lost."""
    idle = make_redis_client()
    job_id = submit(idle, small_png).json()["id"]
    with redis.Redis.from_url(redis_url) as r:
        r.set(f"arq:retry:{job_id}", earlier_starts)
    client = make_redis_client(workers=1, max_attempts=3)
    job = wait_job(client, job_id)
    assert job["status"] == status and job["attempts"] == attempts, job
    if status == "failed":
        assert job["error"]["code"] == "worker_lost" and "3 times" in job["error"]["message"]


def _submission(data: bytes, key: str | None = None) -> Submission:
    params = EncodeOptions(preset="high", iterations=10)
    return Submission(image=data, image_format="png", width=32, height=24, params=params, fingerprint="f" * 64,
                      idempotency_key=key)


def test_only_the_owning_attempt_writes_a_result_once(redis_url, small_png):
    from redis.asyncio import Redis

    from service.queue.redis_store import RedisJobStore

    async def scenario():
        async with Redis.from_url(redis_url) as r:
            store = RedisJobStore(r, retention_seconds=60)
            outcome = await store.insert(_submission(small_png), queue_size=8)
            assert outcome.created and outcome.record.status is JobStatus.queued
            job_id = outcome.record.id
            assert await store.claim(job_id, "a/1", 1) is JobStatus.queued
            assert await store.update_progress(job_id, "a/1", "lease", 5, 3, 10, 20.0) == 1
            assert await store.claim(job_id, "b/2", 2) is JobStatus.running  # a's lease lapsed: b took over
            assert await store.update_progress(job_id, "a/1", "lease", 5, 4, 10, 21.0) == -1  # a learns it
            assert not await store.finish(job_id, JobStatus.succeeded, "a/1", result=b"from a")
            assert await store.finish(job_id, JobStatus.succeeded, "b/2", result=b"from b", result_bytes=6)
            assert not await store.finish(job_id, JobStatus.succeeded, "b/2", result=b"again")
            assert await store.claim(job_id, "c/3", 3) is JobStatus.succeeded  # a late duplicate start: no-op
            record = await store.get(job_id)
            assert record.status is JobStatus.succeeded and record.attempts == 2 and record.result_bytes == 6
            assert await store.blob(job_id, "result") == b"from b"
            assert await store.blob(job_id, "input") is None
            assert await store.counts() == {"succeeded": 1}

    asyncio.run(scenario())


def test_sweep_hands_an_orphaned_job_to_arq(redis_url, small_png, monkeypatch, tmp_path):
    """An API that died between storing a job and handing it to arq leaves a queued job no worker would take;
    the workers' periodic sweep gives it to arq, and it runs."""
    from arq.jobs import Job as ArqJob
    from arq.jobs import JobStatus as ArqJobStatus

    import service.queue.worker
    from service.queue.redis_store import RedisJobStore
    from service.settings import Settings
    from service.queue.worker import EncodeWorker

    monkeypatch.setattr(service.queue.worker, "_ORPHAN_AGE", 0.0)
    settings = Settings(queue_url=redis_url, data_dir=tmp_path, device="cpu")

    async def scenario():
        worker = EncodeWorker(settings, "cpu", "sweeper")
        await worker.start()
        try:
            store = RedisJobStore(worker._pool, settings.retention_seconds)
            job_id = (await store.insert(_submission(small_png), queue_size=8)).record.id
            assert await ArqJob(job_id, worker._pool).status() is ArqJobStatus.not_found
            await worker._sweep()
            deadline = time.monotonic() + 60
            while (await store.get(job_id)).status is not JobStatus.succeeded and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert (await store.get(job_id)).status is JobStatus.succeeded
        finally:
            await worker.forget()
            await worker.stop()

    asyncio.run(scenario())


def test_queue_url_is_validated():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError):
        Settings(queue_url="http://localhost:6379")


def test_gsic_worker_refuses_without_a_queue_or_with_a_bad_device(monkeypatch, capsys, redis_url):
    from cli.main import main

    monkeypatch.delenv("GSIC_QUEUE_URL", raising=False)
    assert main(["worker"]) == 2
    assert "set GSIC_QUEUE_URL" in capsys.readouterr().err
    monkeypatch.setenv("GSIC_QUEUE_URL", redis_url)
    assert main(["worker", "--device", "tpu"]) == 2
    assert "device" in capsys.readouterr().err


def test_a_start_that_lost_its_job_leaves_it_to_the_new_owner(redis_url, kodak_crop, tmp_path):
    """A worker stalled past its lease loses the job to another start. It stops encoding, and keeps the job in
    arq's queue until the new owner ends it; if the new owner dies too, it hands the job back to arq."""
    from arq.constants import default_queue_name, in_progress_key_prefix

    from service.queue.redis_store import RedisJobStore
    from service.settings import Settings
    from service.queue.worker import ENCODE_FUNCTION, EncodeWorker

    settings = Settings(queue_url=redis_url, data_dir=tmp_path, device="cpu", worker_lease_seconds=2)
    long_job = Submission(image=kodak_crop, image_format="png", width=96, height=64, fingerprint="e" * 64,
                          params=EncodeOptions(preset="high", iterations=20000))

    async def until(condition, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not await condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)

    async def scenario():
        worker = EncodeWorker(settings, "cpu", "stalled")
        await worker.start()
        pool = worker._pool
        store = RedisJobStore(pool, settings.retention_seconds)

        async def running_on(job_id, owner):
            record = await store.get(job_id)
            return (record.status is JobStatus.running and record.progress_iteration >= 1
                    and await store.owner(job_id) == owner)

        async def steal():
            job_id = (await store.insert(long_job, queue_size=8)).record.id
            await pool.enqueue_job(ENCODE_FUNCTION, job_id, _job_id=job_id)
            await until(lambda: running_on(job_id, "stalled/1"))
            assert await store.claim(job_id, "other/2", 2) is JobStatus.running  # as if its lease had lapsed
            return job_id

        try:
            job_id = await steal()
            for _ in range(3):  # the new owner holds the lease; the stalled start waits, the job stays queued
                await pool.psetex(in_progress_key_prefix + job_id, 3000, b"1")
                await asyncio.sleep(1.0)
                assert await pool.zscore(default_queue_name, job_id) is not None
                assert (await store.get(job_id)).progress_iteration == 0  # the stalled start writes nothing
            assert await store.finish(job_id, JobStatus.succeeded, "other/2", result=b"gsi", result_bytes=3)
            await until(lambda: _is_none(pool.zscore(default_queue_name, job_id)))  # now arq may drop it
            await until(lambda: _true(worker.busy_with is None))

            orphan = await steal()  # this time the new owner dies: nobody renews the lease
            await until(lambda: running_on(orphan, "stalled/2"), timeout=60)  # handed back, started again
            assert (await store.get(orphan)).attempts == 2
            assert await store.request_cancel(orphan) is JobStatus.running
            await until(lambda: _status(store, orphan, JobStatus.canceled))
            assert await store.blob(job_id, "result") == b"gsi"
        finally:
            await worker.forget()
            await worker.stop()

    asyncio.run(scenario())


async def _is_none(awaitable) -> bool:
    return await awaitable is None


async def _true(value: bool) -> bool:
    return value


async def _status(store, job_id: str, status: JobStatus) -> bool:
    return (await store.get(job_id)).status is status


def test_unreachable_redis_is_a_503_not_a_crash(make_client, tmp_path, small_png):
    from svc_helpers import running_redis

    with running_redis(tmp_path) as url:
        client = make_client(queue_url=url + "/0")
        job_id = submit(client, small_png).json()["id"]
        with redis.Redis.from_url(url) as r:
            r.shutdown(nosave=True)
        for response in (client.get(f"/jobs/{job_id}"), submit(client, small_png), client.get("/readyz"),
                         client.delete(f"/jobs/{job_id}")):
            body = assert_problem(response, 503, "queue_unavailable")
            assert "cannot be reached" in body["message"] and response.headers["Retry-After"] == "5"
        assert client.get("/healthz").status_code == 200


def test_gsic_worker_refuses_to_start_no_encoder(redis_url):
    """GSIC_WORKERS=0 (easily inherited from the API replicas' env file) used to start nothing, connect to
    nothing and say nothing, for ever."""
    import os
    import subprocess
    import sys

    from svc_helpers import REPO

    env = {**os.environ, "GSIC_QUEUE_URL": redis_url, "GSIC_WORKERS": "0", "GSIC_DEVICE": "cpu"}
    run = subprocess.run([sys.executable, "-m", "cli.main", "worker"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "gsic worker: error: GSIC_WORKERS=0 leaves gsic worker no encoder to run; unset it (one worker per GPU, "
        "or one on the CPU) or set how many to run"]
