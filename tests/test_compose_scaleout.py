"""The compose profile scale-out (docker/compose.yaml): Redis, a stateless API and one encode worker per GPU.
Structure only; `docker compose config` of the whole file is checked in test_container.py."""

from __future__ import annotations

from pathlib import Path

import pytest

COMPOSE = Path(__file__).resolve().parents[1] / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def services() -> dict:
    yaml = pytest.importorskip("yaml", reason="pyyaml comes with the test extra")
    everything = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: s for name, s in everything.items() if "scale-out" in (s.get("profiles") or [])}


def env(service: dict) -> dict[str, str | None]:
    return dict(item.split("=", 1) if "=" in item else (item, None) for item in service["environment"])


def test_profile_has_redis_an_api_and_gpu_workers(services):
    workers = sorted(name for name in services if name.startswith("worker-"))
    assert {"redis", "api"} <= set(services) and len(workers) >= 2, sorted(services)
    assert services["redis"]["image"].startswith("redis:") and "--appendonly" in services["redis"]["command"]
    for name in ("api", *workers):
        assert env(services[name])["GSIC_QUEUE_URL"] == "redis://redis:6379/0", name
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert "command" not in services["api"] and "8000" in str(services["api"]["ports"])
    assert not (services["api"].get("deploy") or {}).get("resources")  # the API encodes nothing


def test_each_worker_owns_one_distinct_gpu(services):
    from service.settings import Settings

    known = {f"GSIC_{name.upper()}" for name in Settings.model_fields}
    ids = []
    for name in sorted(n for n in services if n.startswith("worker-")):
        worker = services[name]
        assert worker["command"][:3] == ["worker", "--device", "cuda:0"], worker["command"]  # its only GPU
        (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and len(device["device_ids"]) == 1
        ids.append(device["device_ids"][0])
        assert set(env(worker)) <= known, set(env(worker)) - known
    assert len(set(ids)) == len(ids), ids
