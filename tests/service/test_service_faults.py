"""Fault injection (issue #30), marked slow: Redis stopped, frozen and restarted under load; the encode worker
SIGKILLed at random moments (``gsic worker`` on the Redis queue, ``gsic serve`` itself on the embedded one);
the SQLite store and its WAL overwritten at random offsets.

The property every case checks: each job the service acknowledged (202) ends exactly once (succeeded with a
result that decodes to its size, or failed or canceled with a reason), and once a poll has seen it ended it
never changes; or the service refuses to start and says why in one line. No request takes longer than what
the settings allow. The random choices come from one seed, printed with the counts (``GSIC_FAULT_SEED=N``
replays a run); each test ends by printing one line of counts.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import codec
from service.queue.store import STORE_FILE, StoreDamaged
from svc_helpers import FINISHED, LiveServer, LiveWorker, image_bytes, recorded_successes, redis_process, submit

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("GSIC_FAULT_SEED", random.randrange(2**32)))
TINY = image_bytes(16, 16)
REDIS_TIMEOUT = 1.0  # GSIC_REDIS_TIMEOUT of these services
LEASE_SECONDS = 2  # GSIC_WORKER_LEASE_SECONDS: a killed worker's job runs again this soon
# What a request may take besides its waits on Redis: the HTTP round trip, an upload check and JSON, on two
# cores shared with an encode and the test's own threads.
SLACK = 3.0
# A request makes at most two Redis calls in a row that can each wait out the timeout before it answers 503
# (the first one that times out ends it; /readyz makes two independent ones).
REDIS_LIMIT = 2 * REDIS_TIMEOUT + SLACK


def _rng(name: str) -> random.Random:
    return random.Random(f"{SEED}-{name}")


class Requests:
    """Every request of a test, timed: how each was answered (readiness probes aside), the slowest answer of each
    kind, and those slower than ``limit`` seconds (a request is given ``limit`` + 10 s before it counts as
    hung)."""

    def __init__(self, connect: Callable[[], contextlib.AbstractContextManager], limit: float):
        self.connect, self.limit = connect, limit
        self.answers: Counter = Counter()
        self.slowest: dict = {}
        self.late: list[tuple[str, object, float]] = []
        self._lock = threading.Lock()

    def __call__(self, what: str, call: Callable) -> httpx.Response | None:
        started = time.monotonic()
        response = None
        try:
            with self.connect() as http:
                response = call(http)
            answer = response.status_code
            if answer >= 500 and answer != 503:  # which error: a damaged result is refused as one, by design
                answer = f"{answer} {response.json().get('code')}"
        except httpx.TimeoutException:
            answer = "hung"
        except httpx.TransportError:  # refused or reset: the server is down, the client knows at once
            answer = "no connection"
        seconds = time.monotonic() - started
        with self._lock:
            if what != "readyz":  # its 503 says no worker is alive yet, not that a request failed
                self.answers[answer] += 1
                self.slowest[answer] = max(seconds, self.slowest.get(answer, 0.0))
            if seconds > self.limit or answer == "hung":
                self.late.append((what, answer, round(seconds, 2)))
        return response

    def check(self, expected=(200, 202, 429, 503, "no connection")) -> None:
        assert not self.late, f"requests over the {self.limit} s limit: {self.late[:10]} (seed {SEED})"
        unexpected = {a: n for a, n in self.answers.items() if a not in expected}
        assert not unexpected, f"unexpected answers: {unexpected} (seed {SEED})"

    def summary(self) -> str:
        refused = self.answers[503] + self.answers["no connection"]
        slowest = max([self.slowest.get(503, 0.0), self.slowest.get("no connection", 0.0)])
        return (f"{sum(self.answers.values())} requests, {self.answers[503]} answered 503 and "
                f"{self.answers['no connection']} refused a connection ({refused} in <= {slowest:.1f} s), "
                f"slowest of all {max(self.slowest.values(), default=0.0):.1f} s (limit {self.limit:.1f} s)")


class Ledger:
    """The acknowledged jobs and what polls saw of them: the first answer that showed each one ended, and any
    poll that did not find it (a lost job)."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, str] = {}  # job id -> Idempotency-Key
        self.ended: dict[str, dict] = {}
        self.missing: list[str] = []

    def poll(self, requests: Requests, job_id: str) -> None:
        response = requests("poll", lambda http: http.get(f"/jobs/{job_id}"))
        if response is None or response.status_code == 503:
            return
        if response.status_code == 404:
            self.missing.append(job_id)
            return
        job = response.json()
        if job["status"] in FINISHED:
            self.ended.setdefault(job_id, job)

    def unfinished(self) -> list[str]:
        return [job_id for job_id in self.acknowledged if job_id not in self.ended]

    def settle(self, requests: Requests, timeout: float) -> None:
        """Poll until every acknowledged job has ended (a job queued in Redis but not handed to arq when Redis
        failed waits for the workers' sweep: up to twice its 30 s)."""
        deadline = time.monotonic() + timeout
        while self.unfinished() and time.monotonic() < deadline:
            for job_id in self.unfinished():
                self.poll(requests, job_id)
            time.sleep(0.2)

    def verify(self, requests: Requests) -> Counter:
        """Each acknowledged job ended once: as first seen ended now, its result decoding to its size (or, for
        a store damaged under it, refused as such); the outcomes by kind."""
        outcomes: Counter = Counter()
        assert not self.missing, f"acknowledged jobs not found: {sorted(set(self.missing))} (seed {SEED})"
        assert not self.unfinished(), f"acknowledged jobs that never ended: {self.unfinished()} (seed {SEED})"
        for job_id, seen in self.ended.items():
            response = requests("verify", lambda http: http.get(f"/jobs/{job_id}"))
            assert response.status_code == 200, (job_id, response.text, SEED)
            now = response.json()
            assert [now[k] for k in ("status", "result", "error", "finished_at")] == \
                [seen[k] for k in ("status", "result", "error", "finished_at")], (seen, now, SEED)
            outcomes[ended_once(requests, now)] += 1
        return outcomes


def ended_once(requests: Requests, job: dict) -> str:
    """The kind of end of ``job`` (a finished job resource), checked: a result that decodes to the job's size,
    or an error with a reason; or its result refused as damaged (500 result_damaged), never changed bytes."""
    if job["status"] != "succeeded":
        assert job["error"]["code"] and job["error"]["message"], job
        return f"{job['status']} ({job['error']['code']})"
    response = requests("result", lambda http: http.get(f"/jobs/{job['id']}/result"))
    if response.status_code == 500 and response.json()["code"] == "result_damaged":
        return "result refused as damaged"
    assert response.status_code == 200, response.text
    assert len(response.content) == job["result"]["bytes"]
    assert codec.decode(response.content).shape[:2] == (job["height"], job["width"])
    return "succeeded"


class Load(threading.Thread):
    """One client's traffic while faults happen: it submits a tiny encode whenever fewer than ``outstanding``
    of its jobs are unfinished (resubmitting one that was not acknowledged under the same Idempotency-Key,
    as a client retrying a 503 does) and polls its unfinished ones, every ``interval`` seconds."""

    def __init__(self, requests: Requests, ledger: Ledger, prefix: str, outstanding: int = 6,
                 interval: float = 0.2):
        super().__init__(daemon=True)
        self.requests, self.ledger, self.prefix = requests, ledger, prefix
        self.outstanding, self.interval = outstanding, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stopped.is_set():
            if len(self.ledger.unfinished()) < self.outstanding:
                key = f"{self.prefix}-{count}"
                response = self.requests("submit", lambda http: submit(
                    http, TINY, headers={"Idempotency-Key": key}, seed=str(count)))
                if response is not None and response.status_code == 202:
                    self.ledger.acknowledged[response.json()["id"]] = key
                    count += 1
            for job_id in self.ledger.unfinished():
                self.ledger.poll(self.requests, job_id)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the load thread hangs"


def _report(name: str, cases: Counter, acknowledged: int, outcomes: Counter, requests: Requests) -> None:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(cases.items()))
    ends = ", ".join(f"{n} {kind}" for kind, n in sorted(outcomes.items()))
    print(f"\nfault-injection {name}: {sum(cases.values())} cases ({kinds}), {acknowledged} jobs acknowledged, "
          f"{sum(outcomes.values())} ended exactly once ({ends}), {acknowledged - sum(outcomes.values())} lost; "
          f"{requests.summary()}; seed {SEED}")


def _http(server: LiveServer, limit: float) -> Callable[[], httpx.Client]:
    return lambda: httpx.Client(base_url=server.url, timeout=limit + 10)  # its port changes when it restarts


def _worker_alive(requests: Requests, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests("readyz", lambda http: http.get("/readyz"))
        if response is not None and response.status_code == 200 and any(
                w["name"] == name and w["alive"] for w in response.json()["workers"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"worker {name} not alive after {timeout} s")


# ---- Redis stopped, frozen and restarted under load ----------------------------------------------------------

def test_redis_stopped_frozen_and_restarted_under_load(tmp_path):
    rng = _rng("redis")
    with redis_process(tmp_path, appendonly=True) as redis_server:
        env = {"GSIC_QUEUE_URL": redis_server.url + "/0", "GSIC_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
               "GSIC_WORKER_LEASE_SECONDS": str(LEASE_SECONDS)}
        worker = LiveWorker("w", tmp_path / "w.log", **env).start()
        with contextlib.ExitStack() as stack:
            stack.callback(worker.stop)
            api = stack.enter_context(LiveServer(tmp_path / "api", tmp_path / "api.log", ready_path="/healthz",
                                                 **env))
            requests, ledger = Requests(_http(api, REDIS_LIMIT), REDIS_LIMIT), Ledger()
            _worker_alive(requests, "w", timeout=180)
            load = Load(requests, ledger, "redis")
            load.start()
            stack.callback(load.stopped.set)
            cases: Counter = Counter()
            for fault in rng.sample(["stopped", "frozen", "restarted"] * 4, 12):
                time.sleep(rng.uniform(0.5, 2.5))  # wherever the jobs are: queued, claimed, encoding, ending
                cases[fault] += 1
                if fault == "frozen":
                    redis_server.freeze()
                    time.sleep(rng.uniform(0.5, 3 * REDIS_TIMEOUT))
                    redis_server.thaw()
                    continue
                redis_server.stop()
                if fault == "stopped":
                    time.sleep(rng.uniform(0.5, 4.0))
                assert redis_server.start(), "redis-server did not start again on its port"
            time.sleep(2.0)
            load.stop()
            ledger.settle(requests, timeout=120)
            outcomes = ledger.verify(requests)
        requests.check()
        recorded = recorded_successes([worker])
        assert all(recorded[job_id] <= 1 for job_id in ledger.acknowledged), (recorded, SEED)
    assert cases["frozen"] and cases["stopped"] and requests.answers[503], requests.answers
    assert len(ledger.acknowledged) >= 12, ledger.acknowledged
    _report("redis", cases, len(ledger.acknowledged), outcomes, requests)


# ---- the worker SIGKILLed at random moments --------------------------------------------------------------------

KILLS = 6


@pytest.mark.parametrize("queue", ["redis", "embedded"])
def test_the_worker_sigkilled_at_random_moments(queue, tmp_path):
    """On the Redis queue ``gsic worker`` is killed and another one started; on the embedded one the worker
    is a thread of ``gsic serve``, so the server is killed and started again on the same data dir."""
    rng = _rng(f"kill-{queue}")
    workers: list[LiveWorker] = []
    with contextlib.ExitStack() as stack:
        if queue == "redis":
            env = {"GSIC_QUEUE_URL": stack.enter_context(redis_process(tmp_path)).url + "/0",
                   "GSIC_REDIS_TIMEOUT": str(REDIS_TIMEOUT), "GSIC_WORKER_LEASE_SECONDS": str(LEASE_SECONDS)}
            api = stack.enter_context(LiveServer(tmp_path / "api", tmp_path / "api.log", ready_path="/healthz",
                                                 **env))
            limit = REDIS_LIMIT
        else:
            api = stack.enter_context(LiveServer(tmp_path / "data", tmp_path / "api.log", GSIC_WORKERS="1"))
            limit = SLACK
        requests, ledger = Requests(_http(api, limit), limit), Ledger()

        def start_worker() -> LiveWorker:
            worker = LiveWorker(f"w{len(workers)}", tmp_path / f"w{len(workers)}.log", **env).start()
            stack.callback(worker.stop)
            workers.append(worker)
            _worker_alive(requests, worker.name, timeout=180)  # a new name: the dead one's beat may look alive
            return worker

        victim = api if queue == "embedded" else start_worker()
        load = Load(requests, ledger, f"kill-{queue}")
        load.start()
        stack.callback(load.stopped.set)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.0, 2.5))  # idle, claiming, encoding or recording a job
            victim.kill()
            if queue == "embedded":
                api.start()  # on the same data dir; LiveServer.start waits for /readyz
            else:
                victim = start_worker()
        time.sleep(2.0)
        load.stop()
        ledger.settle(requests, timeout=120)
        outcomes = ledger.verify(requests)
    if queue == "redis":  # each job's result recorded by one worker, however many ran it
        recorded = recorded_successes(workers)
        assert all(recorded[job_id] <= 1 for job_id in ledger.acknowledged), (recorded, SEED)
    requests.check()
    assert len(ledger.acknowledged) >= KILLS, ledger.acknowledged
    if queue == "embedded":
        assert requests.answers["no connection"], requests.answers
    _report(f"worker kill ({queue} queue)", Counter({"SIGKILL": KILLS}), len(ledger.acknowledged), outcomes,
            requests)


# ---- the SQLite store and its WAL damaged at random offsets ----------------------------------------------------

DAMAGE_CASES = 60


def _crash_image(root: Path) -> tuple[Path, dict[str, dict | None]]:
    """The files of a store as a crash leaves them: four jobs that succeeded (checkpointed into the database
    file when their server stopped), then three queued and one of those canceled (commits only in the WAL,
    copied while the next server holds it open); with each job as a poll saw it end (None: not ended). Its WAL
    holds new copies of most pages, which mask damage to the old ones in the database file, so a second image,
    ``checkpointed``, has every commit in the database file and no WAL."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from svc_helpers import copy_store, wait_job

    live = root / "live"
    with TestClient(create_app(Settings(data_dir=live, device="cpu", workers=1))) as client:
        ids = [submit(client, TINY, seed=str(i)).json()["id"] for i in range(4)]
        jobs: dict[str, dict | None] = {job_id: wait_job(client, job_id) for job_id in ids}
    with TestClient(create_app(Settings(data_dir=live, device="cpu", workers=0))) as client:
        queued = [submit(client, TINY, seed=str(i)).json()["id"] for i in range(4, 7)]
        jobs.update(dict.fromkeys(queued))
        jobs[queued[0]] = client.delete(f"/jobs/{queued[0]}").json()
        copy_store(live, root / "crashed")
    shutil.copytree(root / "crashed", root / "checkpointed")
    with contextlib.closing(sqlite3.connect(root / "checkpointed" / STORE_FILE)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root / "checkpointed" / (STORE_FILE + "-wal")).unlink(missing_ok=True)
    assert [job and job["status"] for job in jobs.values()] == ["succeeded"] * 4 + ["canceled", None, None]
    return root, jobs


def test_the_store_and_its_wal_damaged_at_random_offsets(tmp_path):
    """1 to 64 random bytes at a random offset of the database file or of its WAL, then the server starts on it
    with a worker: it refuses in one line naming the store, or every job ends as it had (the queued ones run)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from svc_helpers import overwrite

    rng = _rng("store")
    images, jobs = _crash_image(tmp_path / "images")
    current: dict[str, TestClient] = {}
    requests = Requests(lambda: contextlib.nullcontext(current["client"]), SLACK)
    cases: Counter = Counter()
    outcomes: Counter = Counter()
    acknowledged = 0
    for case in range(DAMAGE_CASES):
        data_dir = tmp_path / f"case{case}"
        image, file = rng.choice([("crashed", STORE_FILE + "-wal"), ("crashed", STORE_FILE),
                                  ("checkpointed", STORE_FILE)])
        shutil.copytree(images / image, data_dir)
        offset, length = rng.randrange((data_dir / file).stat().st_size), rng.randint(1, 64)
        overwrite(data_dir / file, offset, rng.randbytes(length))
        where = f"{file} of the {image} store at {offset} ({length} bytes)"
        try:
            with TestClient(create_app(Settings(data_dir=data_dir, device="cpu", workers=1)),
                            raise_server_exceptions=False) as client:
                current["client"] = client
                ledger = Ledger()
                ledger.acknowledged = dict.fromkeys(jobs, "")
                ledger.ended = {job_id: job for job_id, job in jobs.items() if job is not None}
                ledger.settle(requests, timeout=60)
                outcomes.update(ledger.verify(requests))
        except StoreDamaged as exc:
            reason = str(exc)
            assert "\n" not in reason and str(data_dir / STORE_FILE) in reason, (where, reason, SEED)
            cases[f"refused to start ({file}, {image})"] += 1
            continue
        except AssertionError as exc:
            raise AssertionError(f"damage to {where}: {exc}") from None
        cases[f"served ({file}, {image})"] += 1
        acknowledged += len(jobs)
    requests.check(expected=(200, "500 result_damaged"))
    assert any(kind.startswith("refused") for kind in cases) and any(kind.startswith("served") for kind in cases)
    _report("store damage", cases, acknowledged, outcomes, requests)
