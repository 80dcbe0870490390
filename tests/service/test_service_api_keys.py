"""GSIC_API_KEYS: the work routes answer 401 problem+json without a key; open routes stay open."""

import hashlib

import pytest

from svc_helpers import assert_problem, image_bytes, submit

SECOND = "second-key"
KEYS = f"first-key, sha256:{hashlib.sha256(SECOND.encode()).hexdigest()}"


@pytest.fixture
def keyed(make_client):
    return make_client(workers=0, api_keys=KEYS)


@pytest.mark.parametrize("method, path", [("post", "/encode"), ("post", "/decode"), ("get", "/jobs/x"),
                                          ("delete", "/jobs/x"), ("get", "/metrics"), ("post", "/compare")])
def test_work_routes_need_a_key(keyed, method, path):
    response = getattr(keyed, method)(path)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(getattr(keyed, method)(path, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
    assert_problem(getattr(keyed, method)(path, headers={"Authorization": "Bearer first-key-"}), 401, "unauthorized")


def test_a_plain_or_a_hashed_key_opens_them(keyed):
    png = image_bytes(16, 16)
    assert submit(keyed, png, headers={"Authorization": "Bearer first-key"}).status_code == 202
    job = submit(keyed, png, headers={"X-API-Key": SECOND})
    assert job.status_code == 202
    assert keyed.get(f"/jobs/{job.json()['id']}", headers={"X-API-Key": SECOND}).status_code == 200
    assert keyed.get("/metrics", headers={"authorization": "bearer first-key"}).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/", "/openapi.json"])
def test_open_routes_need_none(keyed, path):
    assert keyed.get(path).status_code == 200


def test_without_keys_nothing_is_asked(idle_client):
    assert idle_client.get("/metrics").status_code == 200
