"""A damaged, deleted or zeroed job store is refused at start (clear message, exit 2), never served."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from codec import EncodeOptions
from service.jobs import Submission
from service.queue.store import STORE_FILE, JobStore, StoreDamaged
from svc_helpers import REPO, image_bytes


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
