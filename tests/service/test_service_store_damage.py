"""A damaged, deleted or zeroed job store is refused at start (clear message, exit 2), never served."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codec import EncodeOptions
from service.jobs import Submission
from service.queue.store import STORE_FILE, JobStore, StoreDamaged
from svc_helpers import REPO, copy_store, image_bytes, overwrite


def _filled(data_dir, jobs: int = 40) -> JobStore:
    """A store with jobs in it, its last commits still in the WAL (as after a crash), left open."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(data_dir / STORE_FILE, 60.0)
    image = image_bytes(64, 64)
    for i in range(jobs):
        store.insert(Submission(image=image, image_format="png", width=64, height=64,
                                params=EncodeOptions(preset="high"), fingerprint=str(i)), 1000)
    return store


def _serve(data_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "GSIC_DATA_DIR": str(data_dir), "GSIC_WORKERS": "0"}
    return subprocess.run([sys.executable, "-m", "service", "--port", "0"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def _damage_pages(path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(4096)  # keep the header page: SQLite then trusts the file and reads garbage b-tree pages
        file.write(os.urandom(min(size - 4096, 16 * 4096)))


def _damaged_store(tmp_path) -> None:
    """A filled store, checkpointed into the database file and closed, with pages of that file overwritten."""
    store = _filled(tmp_path)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    _damage_pages(tmp_path / STORE_FILE)


def test_an_intact_store_reopens(tmp_path):
    _filled(tmp_path).close()
    store = JobStore(tmp_path / STORE_FILE, 60.0)
    assert store.depth() == 40
    store.close()


def test_a_malformed_database_is_refused(tmp_path):
    _damaged_store(tmp_path)
    with pytest.raises(StoreDamaged, match="backup"):
        JobStore(tmp_path / STORE_FILE, 60.0)


@pytest.mark.parametrize("how", ["deleted", "zeroed"])
def test_a_deleted_or_zeroed_database_is_not_recreated_empty(tmp_path, how):
    _filled(tmp_path).close()
    path = tmp_path / STORE_FILE
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(bytes(path.stat().st_size))
    with pytest.raises(StoreDamaged):
        JobStore(path, 60.0)


def test_a_zeroed_wal_is_refused(tmp_path):
    store = _filled(tmp_path)  # open: its commits are in the WAL
    wal = tmp_path / (STORE_FILE + "-wal")
    assert wal.stat().st_size > 0
    wal.write_bytes(bytes(wal.stat().st_size))
    with pytest.raises(StoreDamaged, match="write-ahead log"):
        JobStore(tmp_path / STORE_FILE, 60.0)
    store.close()


def test_serve_refuses_to_start_on_a_damaged_store(tmp_path):
    _damaged_store(tmp_path)
    result = _serve(tmp_path)
    assert result.returncode == 2, result.stderr
    assert "gsic serve: error:" in result.stderr and STORE_FILE in result.stderr
    assert "Traceback" not in result.stderr


def _crashed_copy(tmp_path, jobs: int = 40):
    """The files of a store whose process died with its last commits only in the WAL: copied while it is open."""
    live = _filled(tmp_path / "live", jobs)
    copy = tmp_path / "copy"
    copy_store(tmp_path / "live", copy)
    live.close()
    return copy, copy / (STORE_FILE + "-wal")


def test_an_intact_wal_passes_its_check_with_every_job(tmp_path):
    data_dir, wal = _crashed_copy(tmp_path)
    assert wal.stat().st_size > 100_000
    store = JobStore(data_dir / STORE_FILE, 60.0)
    assert store.depth() == 40
    store.close()


@pytest.mark.parametrize(("where", "reason"), [
    ("inside a frame's page", "fails its checksum"),
    ("a frame's salts", "(its salts)"),
    ("the header's checkpoint number", "header fails its checksum"),
])
def test_a_damaged_wal_is_refused_not_truncated(tmp_path, where, reason):
    """SQLite replays a WAL up to its first bad frame and drops the rest without a word: 64 overwritten bytes
    used to lose 2 to 6 acknowledged jobs while the store opened normally."""
    data_dir, wal = _crashed_copy(tmp_path)
    frame = 24 + 4096
    offset = {"inside a frame's page": 32 + 5 * frame + 24 + 1000, "a frame's salts": 32 + 5 * frame + 8,
              "the header's checkpoint number": 12}[where]
    overwrite(wal, offset, bytes(range(64)) if where.startswith("inside") else b"\xff\xee\xdd\xcc")
    with pytest.raises(StoreDamaged, match=re.escape(reason)) as refused:
        JobStore(data_dir / STORE_FILE, 60.0)
    assert "\n" not in str(refused.value) and "backup" in str(refused.value)


def test_serve_refuses_a_damaged_wal_in_one_line(tmp_path):
    data_dir, wal = _crashed_copy(tmp_path)
    overwrite(wal, 32 + 3 * (24 + 4096) + 24 + 100, bytes(range(1, 65)))
    result = _serve(data_dir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gsic serve: error:") and "frame 3" in lines[0], lines


def test_a_result_changed_in_the_store_is_not_served(make_client, small_png, tmp_path):
    import sqlite3

    from svc_helpers import assert_problem, submit, wait_job

    client = make_client(workers=1)
    job = wait_job(client, submit(client, small_png).json()["id"])
    assert job["status"] == "succeeded" and client.get(f"/jobs/{job['id']}/result").status_code == 200
    with sqlite3.connect(tmp_path / "data" / STORE_FILE) as db:  # one flipped byte, as a damaged page would hold
        data = db.execute("SELECT data FROM blobs WHERE job_id = ? AND kind = 'result'", (job["id"],)).fetchone()[0]
        db.execute("UPDATE blobs SET data = ? WHERE job_id = ? AND kind = 'result'",
                   (data[:-1] + bytes([data[-1] ^ 1]), job["id"]))
    body = assert_problem(client.get(f"/jobs/{job['id']}/result"), 500, "result_damaged")
    assert "digest" in body["message"]


def _checkpointed(tmp_path) -> Path:
    """A filled store with every commit in its database file (no WAL), closed."""
    store = _filled(tmp_path)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return tmp_path / STORE_FILE


@pytest.mark.parametrize("damage", [b"HIGH", b"\xff\xfe\xfd\xfc"], ids=["a changed value", "bytes not UTF-8"])
def test_a_job_row_changed_inside_is_refused(tmp_path, damage):
    """integrity_check reads the b-trees, not what a row holds: a changed value inside a job row used to open
    normally (the fault-injection suite found it), and the job then answered 500 on every poll or changed."""
    path = _checkpointed(tmp_path)
    overwrite(path, path.read_bytes().index(b'"preset": "high"') + 11, damage)
    with pytest.raises(StoreDamaged, match=r"job row \d+ does not match its digest") as refused:
        JobStore(path, 60.0)
    assert "\n" not in str(refused.value) and "backup" in str(refused.value)


def test_a_schema_sqlite_cannot_quote_is_refused_in_one_line(tmp_path):
    """A damaged schema whose text is not UTF-8 makes SQLite's error message undecodable: the store's open used
    to raise UnicodeDecodeError (a traceback from gsic serve) instead of refusing."""
    path = _checkpointed(tmp_path)
    overwrite(path, path.read_bytes().index(b"CREATE TABLE blobs") + 2, b"\xa3" * 4)  # SQLite quotes it
    with pytest.raises(StoreDamaged, match="restore it") as refused:
        JobStore(path, 60.0)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("where, damage", [(b"NEW.result_bpp", b"X"), (b"progress_psnr REAL", b"X")],
                         ids=["a trigger's text", "a column's type"])
def test_a_schema_definition_changed_inside_is_refused(tmp_path, where, damage):
    """The schema is created with IF NOT EXISTS, so a definition changed inside the file used to open: a
    trigger then failed at the first UPDATE of the start's recovery (the fault-injection suite found it: "no
    such column: bNEW.result_bpp", or an undecodable message); a column's changed type would change what it
    stores."""
    path = _checkpointed(tmp_path)
    overwrite(path, path.read_bytes().index(where) + len(where) - 1, damage)
    with pytest.raises(StoreDamaged, match="its schema is not this service's") as refused:
        JobStore(path, 60.0)
    assert "\n" not in str(refused.value) and "backup" in str(refused.value)
