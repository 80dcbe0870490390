"""Health, readiness, metrics, OpenAPI docs and settings."""

from __future__ import annotations

import inspect
import os

import pytest
from pydantic import ValidationError

from service.settings import Settings
from svc_helpers import image_bytes, metric, wait_job


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["devices"] == ["cpu"]
    assert body["workers"][0]["device"] == "cpu" and body["workers"][0]["alive"]


def test_not_ready_without_workers(idle_client):
    assert idle_client.get("/healthz").status_code == 200
    ready = idle_client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert ready.json()["code"] == "not_ready" and ready.json()["workers"] == []
    assert ready.json()["status"] == 503  # problem+json's status, found by the schema fuzz


def test_metrics(client, bitstream):
    job = client.post("/encode", files={"file": ("a.png", image_bytes(16, 16))},
                      data={"iterations": "10", "preset": "high"}).json()
    wait_job(client, job["id"])
    queued = client.post("/encode", files={"file": ("a.png", b"<html>")})
    assert queued.status_code == 415
    assert client.post("/decode", content=bitstream).status_code == 200
    client.get("/jobs/missing")
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    text = text.text
    assert metric(text, 'gsic_http_requests_total{method="POST",route="/encode",status="202"}') == 1
    assert metric(text, 'gsic_http_requests_total{method="POST",route="/encode",status="415"}') == 1
    assert metric(text, 'gsic_http_requests_total{method="GET",route="/jobs/{job_id}",status="404"}') == 1
    assert metric(text, 'gsic_jobs{state="succeeded"}') == 1
    assert metric(text, 'gsic_jobs{state="queued"}') == 0
    assert metric(text, "gsic_queue_depth") == 0
    assert metric(text, 'gsic_workers{alive="true",device="cpu"}') == 1
    assert metric(text, 'gsic_jobs_finished_total{state="succeeded"}') == 1
    assert metric(text, "gsic_encode_duration_seconds_count") == 1
    assert metric(text, "gsic_decode_duration_seconds_count") == 1
    assert metric(text, "gsic_http_request_duration_seconds_count") >= 5


def test_each_app_has_its_own_registry(make_client, tmp_path):
    first = make_client(workers=0, data_dir=tmp_path / "one")
    second = make_client(workers=0, data_dir=tmp_path / "two")
    first.get("/healthz")
    first.get("/healthz")
    second.get("/healthz")
    line = 'gsic_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert metric(first.get("/metrics").text, line) == 2
    assert metric(second.get("/metrics").text, line) == 1


def test_openapi_docs(idle_client):
    assert idle_client.get("/docs").status_code == 200
    schema = idle_client.get("/openapi.json").json()
    expected = {("/encode", "post"): "202", ("/jobs/{job_id}", "get"): "200", ("/jobs/{job_id}", "delete"): "200",
                ("/jobs/{job_id}/result", "get"): "200", ("/decode", "post"): "200", ("/healthz", "get"): "200",
                ("/readyz", "get"): "200", ("/metrics", "get"): "200"}
    for (path, method), ok in expected.items():
        responses = schema["paths"][path][method]["responses"]
        assert ok in responses and responses[ok].get("content"), (path, method)
    encode = schema["paths"]["/encode"]["post"]
    assert "multipart/form-data" in encode["requestBody"]["content"]
    assert "application/problem+json" in encode["responses"]["415"]["content"]
    assert "application/octet-stream" in schema["paths"]["/decode"]["post"]["requestBody"]["content"]


def test_unknown_route_and_method_are_problems(idle_client):
    missing = idle_client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = idle_client.put("/encode")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
    assert wrong.headers["content-type"].startswith("application/problem+json")


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GSIC_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("GSIC_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("GSIC_MAX_PIXELS", "5000")
    monkeypatch.setenv("GSIC_QUEUE_SIZE", "3")
    monkeypatch.setenv("GSIC_RETENTION_SECONDS", "60")
    monkeypatch.setenv("GSIC_WORKERS", "2")
    monkeypatch.setenv("GSIC_DEVICE", "cuda:1")
    settings = Settings()
    assert (settings.data_dir, settings.max_upload_bytes, settings.max_pixels, settings.queue_size,
            settings.retention_seconds, settings.workers, settings.device) == (
        tmp_path / "d", 1234, 5000, 3, 60.0, 2, "cuda:1")
    monkeypatch.setenv("GSIC_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


def test_defaults(monkeypatch):
    for name in [n for n in os.environ if n.startswith("GSIC_")]:
        monkeypatch.delenv(name)
    settings = Settings()
    assert str(settings.data_dir) == ".gsic-data" and settings.retention_seconds == 86400
    assert settings.workers is None and settings.device == "auto"


def test_worker_devices():
    from service.queue.encoding import worker_devices

    assert worker_devices("cpu", None) == ["cpu"]
    assert worker_devices("cpu", 2) == ["cpu", "cpu"]
    assert worker_devices("cuda:1", None) == ["cuda:1"]
    assert worker_devices("auto", 0) == []
    auto = worker_devices("auto", None)
    assert auto == ["cpu"] or all(d.startswith("cuda:") for d in auto)


def test_serve_signature():
    from service.server import serve

    params = inspect.signature(serve).parameters
    assert list(params)[:2] == ["host", "port"]


def test_a_busy_data_dir_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    from service.queue.lock import DataDirLock
    from svc_helpers import REPO

    held = DataDirLock(tmp_path / "data").acquire()
    try:
        env = {**os.environ, "GSIC_DATA_DIR": str(tmp_path / "data"), "GSIC_WORKERS": "0"}
        run = subprocess.run([sys.executable, "-m", "service", "--port", "0"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    finally:
        held.release()
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"gsic serve: error: {tmp_path / 'data'} is in use by another gsic server (process {os.getpid()}); "
        "stop it or set GSIC_DATA_DIR to another directory"]


def test_made_up_methods_do_not_grow_the_metrics(idle_client):
    """Any token is a valid HTTP method; each one used to become a label, so /metrics grew without bound."""
    for i in range(50):
        idle_client.request(f"X{i}", "/healthz")
    idle_client.request("BREW", "/jobs/abc")
    text = idle_client.get("/metrics").text
    assert 'method="X1"' not in text and 'method="BREW"' not in text
    assert metric(text, 'gsic_http_requests_total{method="other",route="/healthz",status="405"}') == 50
    size = len(idle_client.get("/metrics").text)  # now with the series of GET /metrics itself
    for i in range(50, 300):
        idle_client.request(f"X{i}", "/healthz")
    assert len(idle_client.get("/metrics").text) <= size + 200  # counts grow in digits, not in lines


def test_the_queue_package_imports_in_one_direction():
    """service.errors knows no queue, and the Redis worker loads none of the API side's queue (they once
    imported each other): checked in a fresh interpreter, where nothing else has loaded them."""
    import subprocess
    import sys

    from svc_helpers import REPO

    probe = ("import sys, service.errors; print(sorted(m for m in sys.modules if m.startswith('service.queue')));"
             "import service.queue.worker; print('service.queue.distributed' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["[]", "False"]
