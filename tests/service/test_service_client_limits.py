"""Per-client limits (GSIC_CLIENT_MAX_QUEUED, GSIC_CLIENT_MAX_RUNNING; the client is its API key when keys are on,
else its address) and the work one encode may ask for (GSIC_MAX_ENCODE_WORK), on both queue backends."""

from __future__ import annotations

import time

import pytest

from svc_helpers import assert_problem, image_bytes, metric, submit

A, B = {"X-API-Key": "client-a"}, {"X-API-Key": "client-b"}
KEYS = "client-a,client-b"


@pytest.fixture(params=["embedded", "redis"])
def make_app(request, make_client):
    """``make_app(**settings)`` on the embedded queue, then on Redis (with its workers in the same process)."""
    if request.param == "embedded":
        return make_client
    url = request.getfixturevalue("redis_url")
    return lambda **settings: make_client(queue_url=url, **settings)


def test_a_client_at_its_queued_limit_gets_429_and_others_do_not(make_app, small_png):
    client = make_app(workers=0, api_keys=KEYS, client_max_queued=2)
    first, second = (submit(client, small_png, headers=A, seed=str(i)) for i in range(2))
    assert first.status_code == second.status_code == 202
    refused = submit(client, small_png, headers=A, seed="2")
    body = assert_problem(refused, 429, "client_limit")
    assert body["limit"] == "GSIC_CLIENT_MAX_QUEUED" and int(refused.headers["Retry-After"]) >= 1
    assert submit(client, small_png, headers=B).status_code == 202  # another key is another client
    keyed = {**A, "Idempotency-Key": "k"}
    assert_problem(submit(client, small_png, headers=keyed), 429, "client_limit")
    client.delete(f"/jobs/{first.json()['id']}", headers=A)  # one of A's jobs leaves the queue
    queued = submit(client, small_png, headers=keyed)
    assert queued.status_code == 202
    # At the limit again, a replay still gets its job (the key is looked up before the count).
    again = submit(client, small_png, headers=keyed)
    assert again.status_code == 202 and again.json()["id"] == queued.json()["id"]


def test_a_client_at_its_running_limit_waits_while_others_run(make_app, kodak_crop, small_png):
    client = make_app(workers=2, api_keys=KEYS, client_max_running=1)
    long_a = submit(client, kodak_crop, headers=A, iterations="20000").json()["id"]  # minutes unless canceled
    deadline = time.monotonic() + 60
    while client.get(f"/jobs/{long_a}", headers=A).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second_a = submit(client, small_png, headers=A).json()["id"]
    b = submit(client, small_png, headers=B).json()["id"]
    assert wait_for_job(client, b, B)["status"] == "succeeded"  # on the other worker, past A's second job
    assert client.get(f"/jobs/{second_a}", headers=A).json()["status"] == "queued"
    client.delete(f"/jobs/{long_a}", headers=A)
    assert wait_for_job(client, second_a, A)["status"] == "succeeded"


def test_a_job_is_its_key_s_alone_and_readyz_names_no_job(make_app, kodak_crop, small_png):
    """Any valid key could read, download or cancel another key's job, and the open /readyz listed the ids of
    running jobs."""
    client = make_app(workers=1, api_keys=KEYS)
    long_a = submit(client, kodak_crop, headers=A, iterations="20000").json()["id"]  # minutes unless canceled
    deadline = time.monotonic() + 60
    while client.get(f"/jobs/{long_a}", headers=A).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    while not (ready := client.get("/readyz")).json()["workers"][0]["busy"]:  # Redis: at the next heartbeat
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert long_a not in ready.text
    for response in (client.get(f"/jobs/{long_a}", headers=B), client.get(f"/jobs/{long_a}/result", headers=B),
                     client.delete(f"/jobs/{long_a}", headers=B)):
        assert_problem(response, 404, "job_not_found")
    assert client.get(f"/jobs/{long_a}", headers=A).json()["cancel_requested"] is False  # B's DELETE did nothing
    client.delete(f"/jobs/{long_a}", headers=A)
    assert wait_for_job(client, long_a, A)["status"] == "canceled"

    key = {"Idempotency-Key": "mine"}
    short_a = submit(client, small_png, headers={**A, **key}).json()["id"]
    assert wait_for_job(client, short_a, A)["status"] == "succeeded"
    assert client.get(f"/jobs/{short_a}/result", headers=A).status_code == 200
    assert_problem(client.get(f"/jobs/{short_a}/result", headers=B), 404, "job_not_found")
    # The same Idempotency-Key under another key is another key's: a job of its own, not A's.
    replay_b = submit(client, small_png, headers={**B, **key})
    assert replay_b.status_code == 202 and replay_b.json()["id"] != short_a
    assert submit(client, small_png, headers={**A, **key}).json()["id"] == short_a
    assert wait_for_job(client, replay_b.json()["id"], B)["status"] == "succeeded"


def wait_for_job(client, job_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 120
    while True:
        job = client.get(f"/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_an_encode_asking_for_more_work_than_the_limit_is_422_and_not_queued(make_app):
    png = image_bytes(32, 24)
    client = make_app(workers=0, max_encode_work=32 * 24 * 10)
    assert submit(client, png, iterations="10").status_code == 202  # exactly the limit
    body = assert_problem(submit(client, png, iterations="11"), 422, "encode_too_costly")
    assert body["limit"] == "GSIC_MAX_ENCODE_WORK" and body["work"] == 32 * 24 * 11
    assert "GSIC_MAX_ENCODE_WORK" in body["message"]
    # Without iterations the codec's default count is what the job would run.
    response = client.post("/encode", files={"file": ("a.png", png, "image/png")}, data={"preset": "high"})
    assert_problem(response, 422, "encode_too_costly")
    assert metric(client.get("/metrics").text, "gsic_queue_depth") == 1


def test_a_store_of_the_previous_schema_is_upgraded_with_its_jobs(make_client, tmp_path, small_png):
    import sqlite3

    first = make_client(workers=0)
    old_job = submit(first, small_png).json()["id"]
    first.__exit__(None, None, None)
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:  # as the release before jobs.client left it
        db.execute("DROP TRIGGER jobs_digest_insert")
        db.execute("DROP TRIGGER jobs_digest_update")
        db.execute("ALTER TABLE jobs DROP COLUMN digest")
        db.execute("ALTER TABLE jobs DROP COLUMN client")
        db.execute("ALTER TABLE jobs DROP COLUMN result_sha256")
        db.execute("PRAGMA user_version = 1")
    second = make_client(workers=0, client_max_queued=1)
    assert second.get(f"/jobs/{old_job}").json()["status"] == "queued"
    assert submit(second, small_png, seed="1").status_code == 202  # the old job counts for no client
    assert_problem(submit(second, small_png, seed="2"), 429, "client_limit")
