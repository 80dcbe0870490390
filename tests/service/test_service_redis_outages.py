"""The Redis queue through Redis outages, against a real redis-server stopped, restarted or frozen (SIGSTOP):
workers poll again once it is back, and nothing waits on it longer than its timeout."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from svc_helpers import LiveWorker, redis_process, submit, wait_job


def _alive(client, name: str) -> bool:
    return any(w["name"] == name and w["alive"] for w in client.get("/readyz").json()["workers"])


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_worker_takes_jobs_again_after_redis_restarts(make_client, small_png, tmp_path):
    """A restart of Redis ends arq's polling loop with a ConnectionError; the worker used to beat on without it
    (alive in /readyz) while every later job stayed queued for ever."""
    with redis_process(tmp_path) as server:
        url = server.url + "/0"
        worker = LiveWorker("w", tmp_path / "w.log", GSIC_QUEUE_URL=url, GSIC_WORKER_LEASE_SECONDS="2").start()
        try:
            client = make_client(queue_url=url)  # the API runs no encoder
            _until(lambda: _alive(client, "w"), 180, f"the worker to start; log:\n{worker.log()}")
            server.stop()
            time.sleep(3)
            assert server.start()  # empty: no persistence
            _until(lambda: _alive(client, "w"), 30, f"the worker's heartbeat; log:\n{worker.log()}")
            job = wait_job(client, submit(client, small_png).json()["id"], timeout=60)
            assert job["status"] == "succeeded", worker.log()
            assert "polling for jobs failed" in worker.log()
        finally:
            worker.stop()
        assert worker.proc.returncode == 0, worker.log()


def test_gsic_worker_exits_non_zero_when_it_cannot_poll(redis_url, tmp_path, monkeypatch, caplog):
    """A polling loop that fails for a reason other than Redis is not restarted: the worker leaves the registry
    and ``gsic worker`` exits with status 1, for its service manager to start it again."""
    import arq

    from service.queue.worker import run_workers
    from service.settings import Settings

    async def broken(self):
        raise RuntimeError("broken poll")

    monkeypatch.setattr(arq.Worker, "async_run", broken)
    settings = Settings(queue_url=redis_url, data_dir=tmp_path, device="cpu")
    assert asyncio.run(run_workers(settings, ["cpu"], ["broken"])) == 1
    assert "broken cannot poll for jobs: RuntimeError('broken poll')" in caplog.text
    with redis.Redis.from_url(redis_url) as r:
        assert r.hgetall("gsic:workers") == {}


def test_a_frozen_redis_is_a_503_within_the_timeout(make_client, small_png, tmp_path):
    """A Redis that accepts connections but answers nothing (SIGSTOP) used to hang every request for good."""
    from concurrent.futures import ThreadPoolExecutor

    from svc_helpers import assert_problem

    with redis_process(tmp_path) as server:
        client = make_client(queue_url=server.url + "/0", redis_timeout=1)
        job_id = submit(client, small_png).json()["id"]
        calls = {"poll": lambda: client.get(f"/jobs/{job_id}"), "submit": lambda: submit(client, small_png),
                 "readyz": lambda: client.get("/readyz"), "cancel": lambda: client.delete(f"/jobs/{job_id}")}
        pool = ThreadPoolExecutor(max_workers=1)  # not a with block: a hung call must not hang the test too
        server.freeze()
        try:
            for name, call in calls.items():
                started = time.monotonic()
                response = pool.submit(call).result(timeout=15)
                assert time.monotonic() - started < 5, name  # readyz makes two calls of at most 1 s each
                body = assert_problem(response, 503, "queue_unavailable")
                assert "cannot be reached" in body["message"] and response.headers["Retry-After"] == "5"
        finally:
            server.thaw()
            pool.shutdown()
        assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"  # thawed, it answers again


def test_each_outage_starts_the_repoll_delays_again(tmp_path, monkeypatch):
    """The delays before polling again (0.5, 1, 2, then 5 s) used to run on over a worker's whole life: after
    its fourth failed poll every later outage, however far apart, waited 5 s before the first new poll (the
    fault-injection suite's worker logs showed it)."""
    from types import SimpleNamespace

    from service.queue import worker as worker_module
    from service.settings import Settings

    monkeypatch.setattr(worker_module, "_REPOLL_DELAYS", (0.1, 0.5, 1.0))
    starts: list[float] = []

    async def poll() -> None:
        starts.append(time.monotonic())
        if len(starts) == 4:
            await asyncio.sleep(1.5)  # Redis answered a while, then failed again
        if len(starts) == 5:
            raise RuntimeError("done")
        raise redis.exceptions.ConnectionError("Redis is down")

    worker = worker_module.EncodeWorker(Settings(data_dir=tmp_path, device="cpu"), "cpu", "w")
    worker._worker = SimpleNamespace(async_run=poll)
    with pytest.raises(RuntimeError, match="done"):
        asyncio.run(worker._poll())
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert 0.5 <= gaps[1] < 1.0 and 1.0 <= gaps[2] < 1.5, gaps  # one outage: 0.1, 0.5, 1 s
    assert 1.5 <= gaps[3] < 1.5 + 0.5, gaps  # the next one starts at 0.1 s again (1 s without the reset)
