"""POST /encode, GET/DELETE /jobs/{id}, GET /jobs/{id}/result: every state and answer, through TestClient."""

from __future__ import annotations

import io
import sqlite3
import time
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

import codec
from svc_helpers import assert_problem, image_bytes, submit, wait_job

def test_encode_lifecycle_to_success(client, small_png):
    response = submit(client, small_png)
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    assert job["status"] in ("queued", "running")
    assert (job["width"], job["height"]) == (32, 24)
    assert job["parameters"] == {"bpp": None, "preset": "high", "iterations": 10, "seed": 0}

    job = wait_job(client, job["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"iteration": 10, "total": 10, "fraction": 1.0}
    assert job["error"] is None and job["attempts"] == 1
    created, started, finished, expires = (datetime.fromisoformat(job[k]) for k in
                                           ("created_at", "started_at", "finished_at", "expires_at"))
    assert created <= started <= finished
    assert abs((expires - finished).total_seconds() - 86400) < 1
    final = client.get(f"/jobs/{job['id']}")
    assert "Retry-After" not in final.headers

    result = client.get(job["result"]["url"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/octet-stream"
    assert f'filename="{job["id"]}.gsi"' in result.headers["content-disposition"]
    data = result.content
    assert len(data) == job["result"]["bytes"]
    assert job["result"]["bpp"] == pytest.approx(len(data) * 8 / (32 * 24))
    assert codec.inspect(data).width == 32
    # The reported PSNR is the decoded bitstream's against the upload.
    original = np.asarray(Image.open(io.BytesIO(small_png)).convert("RGB"))
    assert codec.psnr(original, codec.decode(data)) == pytest.approx(job["result"]["psnr"], abs=0.01)
    assert job["psnr"] == job["result"]["psnr"]


def test_bpp_target_and_default_preset(idle_client, small_png):
    job = idle_client.post("/encode", files={"file": ("a.png", small_png)}, data={"bpp": "0.5"}).json()
    assert job["parameters"]["bpp"] == 0.5 and job["parameters"]["preset"] is None
    job = idle_client.post("/encode", files={"file": ("a.png", small_png)}).json()
    assert job["parameters"]["preset"] == "medium"  # neither bpp nor preset: the default rate


@pytest.mark.parametrize(("form", "code"), [
    ({"bpp": "0.5", "preset": "low"}, "invalid_parameters"),
    ({"preset": "ultra"}, "unknown_preset"),
    ({"bpp": "0.001"}, "invalid_request"),
    ({"bpp": "5"}, "invalid_request"),
    ({"bpp": "nan"}, "invalid_request"),
    ({"bpp": "abc"}, "invalid_request"),
    ({"iterations": "0"}, "invalid_request"),
    ({"iterations": "1000001"}, "invalid_parameters"),
    ({"seed": "-1"}, "invalid_request"),
])
def test_parameters_out_of_bounds(idle_client, small_png, form, code):
    response = idle_client.post("/encode", files={"file": ("a.png", small_png)}, data=form)
    body = assert_problem(response, 422, code)
    if code == "invalid_request":
        assert body["errors"] and body["errors"][0]["loc"][0] == "body"


def test_queued_job_polls_and_result_conflict(idle_client, small_png):
    job = submit(idle_client, small_png).json()
    polled = idle_client.get(f"/jobs/{job['id']}")
    assert polled.json()["status"] == "queued" and int(polled.headers["Retry-After"]) >= 1
    result = idle_client.get(f"/jobs/{job['id']}/result")
    assert_problem(result, 409, "job_not_succeeded")
    assert int(result.headers["Retry-After"]) >= 1


def test_unknown_job_is_404(idle_client):
    for response in (idle_client.get("/jobs/nope"), idle_client.get("/jobs/nope/result"),
                     idle_client.delete("/jobs/nope")):
        assert_problem(response, 404, "job_not_found")


def test_cancel_queued_job_is_idempotent(idle_client, small_png):
    job = submit(idle_client, small_png).json()
    first = idle_client.delete(f"/jobs/{job['id']}")
    assert first.status_code == 200 and first.json()["status"] == "canceled"
    assert first.json()["error"]["code"] == "canceled"
    second = idle_client.delete(f"/jobs/{job['id']}")
    assert second.status_code == 200 and second.json() == first.json()
    assert_problem(idle_client.get(f"/jobs/{job['id']}/result"), 409, "job_not_succeeded")
    assert "Retry-After" not in idle_client.get(f"/jobs/{job['id']}").headers
    assert 'gsic_jobs_finished_total{state="canceled"} 1.0' in idle_client.get("/metrics").text  # counted once


def test_cancel_running_job_stops_it(client, kodak_crop):
    job = submit(client, kodak_crop, iterations="20000").json()  # minutes if not stopped
    job = wait_job(client, job["id"], until=("succeeded", "failed", "canceled", "running"), timeout=30)
    # Wait for the first progress report, then check the live progress fields.
    deadline = time.monotonic() + 30
    while job["progress"]["iteration"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["status"] == "running" and job["progress"]["total"] == 20000
    assert 0 < job["progress"]["fraction"] < 1 and job["psnr"] is not None
    assert job["started_at"] is not None and job["finished_at"] is None

    response = client.delete(f"/jobs/{job['id']}")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    stopped = time.monotonic()
    job = wait_job(client, job["id"], timeout=30)
    assert job["status"] == "canceled" and job["error"]["code"] == "canceled"
    assert time.monotonic() - stopped < 20
    assert job["progress"]["iteration"] < 20000
    again = client.delete(f"/jobs/{job['id']}")
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    # The worker is free again.
    follow = submit(client, image_bytes(16, 16)).json()
    assert wait_job(client, follow["id"])["status"] == "succeeded"


def test_progress_of_a_canceled_job_never_goes_back(client, kodak_crop):
    """Issue 14: polls show the live progress while a job runs; once canceled it fell back to the last
    (throttled) write to the store."""
    job_id = submit(client, kodak_crop, iterations="20000").json()["id"]
    seen = [0]
    deadline = time.monotonic() + 60
    while seen[-1] < 5 and time.monotonic() < deadline:  # a few progress reports in, between two writes
        seen.append(client.get(f"/jobs/{job_id}").json()["progress"]["iteration"])
        time.sleep(0.02)
    canceled = client.delete(f"/jobs/{job_id}")
    assert canceled.status_code == 202, canceled.text
    seen.append(canceled.json()["progress"]["iteration"])
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        seen.append(job["progress"]["iteration"])
        if job["status"] == "canceled" or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert job["status"] == "canceled", job
    seen += [client.get(f"/jobs/{job_id}").json()["progress"]["iteration"] for _ in range(3)]
    assert seen == sorted(seen), seen
    assert seen[-1] >= 5


def test_delete_finished_job_keeps_it(client, small_png):
    job = wait_job(client, submit(client, small_png).json()["id"])
    response = client.delete(f"/jobs/{job['id']}")
    assert response.status_code == 200 and response.json()["status"] == "succeeded"
    assert client.get(f"/jobs/{job['id']}/result").status_code == 200


def test_idempotency_key(idle_client, small_png):
    key = {"Idempotency-Key": "upload-1"}
    first = submit(idle_client, small_png, headers=key)
    second = submit(idle_client, small_png, headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Location"] == first.headers["Location"]
    assert_problem(submit(idle_client, image_bytes(16, 16), headers=key), 422, "idempotency_key_reused")
    assert_problem(submit(idle_client, small_png, headers=key, seed="7"), 422, "idempotency_key_reused")
    other = submit(idle_client, small_png, headers={"Idempotency-Key": "upload-2"})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    assert submit(idle_client, small_png).json()["id"] not in (first.json()["id"], other.json()["id"])


def test_full_queue_answers_429(make_client, small_png):
    client = make_client(workers=0, queue_size=2)
    jobs = [submit(client, small_png) for _ in range(2)]
    assert [r.status_code for r in jobs] == [202, 202]
    full = submit(client, small_png)
    assert_problem(full, 429, "queue_full")
    assert int(full.headers["Retry-After"]) >= 1
    client.delete(f"/jobs/{jobs[0].json()['id']}")  # a slot frees up
    assert submit(client, small_png).status_code == 202


def test_an_idempotent_replay_gets_its_job_while_the_queue_is_full(make_client, small_png):
    client = make_client(workers=0, queue_size=1)
    key = {"Idempotency-Key": "replayed"}
    first = submit(client, small_png, headers=key)
    assert first.status_code == 202
    assert_problem(submit(client, small_png), 429, "queue_full")
    replay = submit(client, small_png, headers=key)
    assert replay.status_code == 202 and replay.json()["id"] == first.json()["id"]
    assert_problem(submit(client, small_png, headers={"Idempotency-Key": "new"}), 429, "queue_full")


def test_result_expires_after_retention(make_client, small_png):
    client = make_client(workers=1, retention_seconds=0.5)
    job = wait_job(client, submit(client, small_png).json()["id"])
    assert job["status"] == "succeeded"
    time.sleep(max(0.0, (datetime.fromisoformat(job["expires_at"]).timestamp() - time.time())) + 0.1)
    assert_problem(client.get(f"/jobs/{job['id']}/result"), 410, "result_expired")
    client.app.state.queue.store.purge_expired()  # what the janitor does: the blob goes, the record stays
    assert_problem(client.get(f"/jobs/{job['id']}/result"), 410, "result_expired")
    assert client.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"


def test_queued_jobs_survive_a_restart(make_client, tmp_path, small_png):
    first = make_client(workers=0)
    ids = [submit(first, image_bytes(16 + i, 16)).json()["id"] for i in range(3)]
    first.__exit__(None, None, None)  # clean shutdown of the first app

    second = make_client(workers=1)
    jobs = [wait_job(second, job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    assert [j["width"] for j in jobs] == [16, 17, 18]
    counts = _job_counts(tmp_path / "data")
    assert counts == {"succeeded": 3}


def test_interrupted_job_is_requeued_then_given_up(make_client, tmp_path, small_png):
    first = make_client(workers=0)
    interrupted = submit(first, small_png).json()["id"]
    poison = submit(first, image_bytes(20, 20)).json()["id"]
    store = first.app.state.queue.store
    assert store.claim_next().id == interrupted and store.claim_next().id == poison  # "running" ...
    store._db.execute("UPDATE jobs SET attempts = 3 WHERE id = ?", (poison,))  # the poison job died 3 times
    first.__exit__(None, None, None)  # ... when the process went away

    second = make_client(workers=1)
    job = wait_job(second, interrupted)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    lost = second.get(f"/jobs/{poison}").json()
    assert lost["status"] == "failed" and lost["error"]["code"] == "worker_lost"


def test_cancel_requested_before_a_crash_ends_canceled(make_client, tmp_path, small_png):
    first = make_client(workers=0)
    job_id = submit(first, small_png).json()["id"]
    first.app.state.queue.store.claim_next()
    assert first.delete(f"/jobs/{job_id}").status_code == 202
    first.__exit__(None, None, None)
    second = make_client(workers=1)
    assert second.get(f"/jobs/{job_id}").json()["status"] == "canceled"


def test_a_data_dir_serves_one_process(make_client, tmp_path):
    from service.queue.lock import DataDirInUse

    make_client(workers=0)
    with pytest.raises(DataDirInUse, match="in use by another gsic server"):
        make_client(workers=0)


def test_failed_encode_is_a_failed_job(make_client, tmp_path, small_png):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.metrics import Metrics
    from service.queue.embedded import EmbeddedQueue
    from service.settings import Settings

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    settings = Settings(data_dir=tmp_path / "broken", workers=1, device="cpu")
    queue = EmbeddedQueue(settings, Metrics(), encode=broken)
    with TestClient(create_app(settings, queue=queue)) as client:
        job = wait_job(client, submit(client, small_png).json()["id"])
    assert job["status"] == "failed"
    assert job["error"] == {"code": "encode_failed", "message": "RuntimeError: boom"}
    assert job["result"] is None


def _job_counts(data_dir) -> dict[str, int]:
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
