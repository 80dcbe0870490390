"""GSIC_API_KEYS and GSIC_API_KEYS_FILE: the work routes answer 401 problem+json without a key; open routes
stay open; a key file that cannot be used stops the service from starting."""

import hashlib
import io
import os
import subprocess
import sys

import pytest

from cli.main import main
from service.auth import ApiKeysInvalid
from ports import free_port
from svc_helpers import REPO, assert_problem, image_bytes, submit

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


def hash_key_line(key: str, capsys, monkeypatch) -> str:
    """What `gsic hash-key` prints for ``key`` given on stdin."""
    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    assert main(["hash-key"]) == 0
    return capsys.readouterr().out.strip()


def test_a_file_of_hashed_keys_opens_them_beside_the_plain_ones(make_client, tmp_path, capsys, monkeypatch):
    line = hash_key_line("file-key", capsys, monkeypatch)
    assert line.startswith("sha256:") and "file-key" not in line
    assert main(["hash-key", "--new"]) == 0
    new_key, new_line = capsys.readouterr().out.split()
    keys = tmp_path / "keys"
    keys.write_text(f"# one digest a line\n{line}\n\n{new_line}  # the deploy bot\n")
    client = make_client(workers=0, api_keys_file=keys, api_keys="env-key")
    for key in ("file-key", new_key, "env-key"):
        assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200, key
    assert_problem(client.get("/metrics", headers={"X-API-Key": line}), 401, "unauthorized")  # the digest is no key
    assert_problem(client.get("/metrics"), 401, "unauthorized")
    only_file = make_client(workers=0, api_keys_file=keys, data_dir=tmp_path / "only-file")
    assert only_file.get("/metrics", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    assert_problem(only_file.get("/metrics", headers={"X-API-Key": "env-key"}), 401, "unauthorized")


@pytest.mark.parametrize("content, says", [
    ("sha256:abc\n", "line 1"),
    (f"sha256:{'0' * 64}\nplain-secret-key\n", "line 2"),
    ("# nothing but a comment\n", "no key digest"),
])
def test_a_malformed_key_file_is_refused(make_client, tmp_path, content, says):
    keys = tmp_path / "keys"
    keys.write_text(content)
    with pytest.raises(ApiKeysInvalid, match=says) as refused:
        make_client(workers=0, api_keys_file=keys)
    assert "plain-secret-key" not in str(refused.value)  # a key pasted where a digest belongs is not echoed


def test_gsic_serve_will_not_start_on_an_unreadable_key_file(tmp_path):
    env = {**os.environ, "GSIC_DATA_DIR": str(tmp_path / "data"), "GSIC_API_KEYS_FILE": str(tmp_path / "absent"),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "service", "--port", str(free_port())], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("gsic serve: error: GSIC_API_KEYS_FILE") and "cannot be read" in done.stderr
