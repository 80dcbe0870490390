"""SQLite persistence of the embedded queue: job records, uploaded images and results.

One connection guarded by a lock, WAL journal: a commit survives the process being killed (SIGKILL) at any
point, and a job's row and its input (or its result and final state) are written in one transaction, so a
restart never sees half a job.

A store is checked when it opens (``StoreDamaged``, and ``gsic serve`` refuses to start with a one-line
reason): the WAL's header and frames against their checksums (before SQLite reads it: it would drop the
commits after a damaged frame without a word), SQLite's integrity_check, the tables', indexes' and triggers'
definitions against this service's (``_check_schema``), every job row against the digest its triggers keep
(``_check_rows``), and a database that is missing or empty although this data dir has held one (the
``.created`` marker beside it), which SQLite would otherwise recreate empty. A result is stored with its
SHA-256, checked when it is served (``JobQueue.result``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from codec import EncodeOptions
from service.jobs import JobRecord, JobStatus, Submission, client_params, result_digest
from service.queue.base import ClientLimit, IdempotencyConflict, QueueFull, SubmitOutcome

SCHEMA_VERSION = 4  # 2: jobs.client (the per-client limits); 3: jobs.result_sha256; 4: jobs.digest
STORE_FILE = "jobs.sqlite3"  # in the data dir, with its -wal and -shm files and the .created marker
_WAL_MAGIC = (0x377F0682, 0x377F0683)  # the first big-endian word of a WAL file (SQLite's file format)
_WAL_HEADER, _WAL_FRAME_HEADER = 32, 24  # bytes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    input_bytes INTEGER NOT NULL,
    input_format TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress_iteration INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER,
    progress_psnr REAL,
    error_code TEXT,
    error_message TEXT,
    result_bytes INTEGER,
    result_bpp REAL,
    result_psnr REAL,
    result_n_gaussians INTEGER,
    result_seconds REAL,
    result_device TEXT,
    purged INTEGER NOT NULL DEFAULT 0,
    client TEXT,
    result_sha256 TEXT,
    digest TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS blobs (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('input', 'result')),
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, kind)
);
"""

_FINISHED = tuple(s.value for s in JobStatus if s.finished)

# A job row's digest covers every other column; triggers write it with every insert and update, whatever the
# statement, and the store checks it when it opens: integrity_check checks the b-trees, not what a row holds.
_DIGESTED = ("seq", "id", "status", "params", "width", "height", "input_bytes", "input_format", "fingerprint",
             "idempotency_key", "created_at", "started_at", "finished_at", "attempts", "cancel_requested",
             "progress_iteration", "progress_total", "progress_psnr", "error_code", "error_message", "result_bytes",
             "result_bpp", "result_psnr", "result_n_gaussians", "result_seconds", "result_device", "purged", "client",
             "result_sha256")


def _digest_of(row: str) -> str:
    """SQL for the digest of a jobs row (``row`` is "NEW." in a trigger, "" in a query)."""
    return f"gsic_row_digest({', '.join(row + column for column in _DIGESTED)})"


_TRIGGERS = [f"CREATE TRIGGER IF NOT EXISTS jobs_digest_{when.split()[0].lower()} AFTER {when} ON jobs BEGIN "
             f"UPDATE jobs SET digest = {_digest_of('NEW.')} WHERE seq = NEW.seq; END"
             for when in ("INSERT", f"UPDATE OF {', '.join(_DIGESTED)}")]


_STATEMENTS = [s for s in [*_SCHEMA.split(";"), *_TRIGGERS] if s.strip()]  # what makes a store, in order


def _connect(path: str | Path) -> sqlite3.Connection:  # with the function the row triggers call
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.create_function("gsic_row_digest", -1, _row_digest, deterministic=True)
    return db


def _schema_of(db: sqlite3.Connection) -> dict[tuple[str, str], str | None]:
    """Each schema object's definition, whitespace removed: a store upgraded from schema 1–3 holds the columns
    it gained as ALTER TABLE appended them, which differs from a new store's text only in whitespace."""
    return {(kind, name): None if sql is None else "".join(sql.split())
            for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master")}


@functools.cache
def _expected_schema() -> dict[tuple[str, str], str | None]:
    with contextlib.closing(_connect(":memory:")) as db:
        for statement in _STATEMENTS:
            db.execute(statement)
        return _schema_of(db)


def _row_digest(*values) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()


class StoreDamaged(RuntimeError):
    """The job store cannot be trusted: corrupt, or its files were removed or overwritten."""


class JobStore:
    def __init__(self, path: Path, retention_seconds: float):
        self.path = Path(path)
        self.retention = float(retention_seconds)
        self._lock = threading.RLock()
        marker = self.path.with_name(self.path.name + ".created")
        _check_wal(self.path.with_name(self.path.name + "-wal"))
        with self._refusing():
            self._db = _connect(self.path)
            self._open(marker.exists())
        marker.touch()

    @contextlib.contextmanager
    def _refusing(self) -> Iterator[None]:
        """SQLite's errors on a damaged file ("file is not a database", "database disk image is malformed")
        as a one-line StoreDamaged; a damaged schema can make SQLite's own message undecodable."""
        try:
            yield
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreDamaged(f"{self.path}: {' '.join(str(exc).split())}; restore it (with its -wal file) from a "
                               "backup") from None

    def _open(self, existed: bool) -> None:
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against process death; WAL keeps it consistent
        problems = [" ".join(row[0].split()) for row in self._db.execute("PRAGMA integrity_check(3)")]
        if problems != ["ok"]:
            raise StoreDamaged(f"{self.path} is damaged ({'; '.join(problems)}); restore it (with its -wal "
                               "file) from a backup")
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and existed:
                raise StoreDamaged(f"{self.path} is empty or missing, but this data dir held a job store: its "
                                   "jobs are gone; restore it (with its -wal file) from a backup, or remove "
                                   f"{self.path.name}.created to start afresh")
            if version not in (0, 1, 2, SCHEMA_VERSION):
                raise RuntimeError(f"{self.path}: job store schema {version}, this service knows {SCHEMA_VERSION}")
            if version == 1:  # a store of an earlier release: its jobs count for no client
                db.execute("ALTER TABLE jobs ADD COLUMN client TEXT")
            if version in (1, 2):  # its results have no digest to check
                db.execute("ALTER TABLE jobs ADD COLUMN result_sha256 TEXT")
            if version in (1, 2, 3):  # nor its rows, until now
                db.execute("ALTER TABLE jobs ADD COLUMN digest TEXT")
            for statement in _STATEMENTS:
                db.execute(statement)
            if version in (1, 2, 3):
                db.execute(f"UPDATE jobs SET digest = {_digest_of('')}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._check_schema()
        self._check_rows()

    def _check_schema(self) -> None:
        """The tables, indexes and triggers are the ones this service creates: the statements above create only
        what is missing, so a definition changed inside the file (a trigger's text, a column's name or CHECK)
        would pass integrity_check and fail later, when a statement first touches it."""
        if _schema_of(self._db) != _expected_schema():
            raise StoreDamaged(f"{self.path} is damaged (its schema is not this service's); restore it (with its "
                               "-wal file) from a backup")

    def _check_rows(self) -> None:
        """Every job row still matches its digest: bytes changed inside one would otherwise answer 500 for that
        job on every poll, or silently change it (its state, its error, its result's figures)."""
        for (seq,) in self._db.execute("SELECT seq FROM jobs").fetchall():
            try:
                intact = self._db.execute(f"SELECT digest IS {_digest_of('')} FROM jobs WHERE seq = ?",
                                          (seq,)).fetchone()[0]
            except sqlite3.OperationalError:  # a text that is no longer UTF-8
                intact = False
            if not intact:
                raise StoreDamaged(f"{self.path} is damaged (job row {seq} does not match its digest); restore "
                                   "it (with its -wal file) from a backup")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @classmethod
    def check(cls, data_dir: Path) -> None:
        """Open and close the store of ``data_dir`` (creating it when new); raises StoreDamaged."""
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        cls(Path(data_dir) / STORE_FILE, 1.0).close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- reading ------------------------------------------------------------------------------------------

    def _record(self, row: sqlite3.Row) -> JobRecord:
        params = EncodeOptions(**json.loads(row["params"]))
        finished_at = row["finished_at"]
        return JobRecord(
            id=row["id"], status=JobStatus(row["status"]), params=params, width=row["width"], height=row["height"],
            input_bytes=row["input_bytes"], input_format=row["input_format"], created_at=row["created_at"],
            started_at=row["started_at"], finished_at=finished_at, attempts=row["attempts"],
            cancel_requested=bool(row["cancel_requested"]), progress_iteration=row["progress_iteration"],
            progress_total=row["progress_total"], progress_psnr=row["progress_psnr"], error_code=row["error_code"],
            error_message=row["error_message"], result_bytes=row["result_bytes"], result_bpp=row["result_bpp"],
            result_psnr=row["result_psnr"], result_n_gaussians=row["result_n_gaussians"],
            result_seconds=row["result_seconds"], result_device=row["result_device"],
            expires_at=None if finished_at is None else finished_at + self.retention, client=row["client"],
            result_sha256=row["result_sha256"],
        )

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._record(row)

    def blob(self, job_id: str, kind: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM blobs WHERE job_id = ? AND kind = ?", (job_id, kind)).fetchone()
        return None if row is None else bytes(row[0])

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: n for status, n in rows}

    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]

    # ---- writing ------------------------------------------------------------------------------------------

    def insert(self, submission: Submission, queue_size: int,
               client_max_queued: int | None = None) -> SubmitOutcome:
        """Queue a job with its input; an Idempotency-Key replay returns the existing job instead. Raises
        IdempotencyConflict, QueueFull, or ClientLimit when the submission's client has ``client_max_queued``
        waiting."""
        with self._tx() as db:
            if submission.idempotency_key is not None:
                row = db.execute("SELECT * FROM jobs WHERE idempotency_key = ?",
                                 (submission.idempotency_key,)).fetchone()
                if row is not None:
                    if row["fingerprint"] != submission.fingerprint:
                        raise IdempotencyConflict()
                    return SubmitOutcome(self._record(row), created=False)
            depth = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if depth >= queue_size:
                raise QueueFull(depth)
            if client_max_queued is not None and submission.client is not None:
                queued = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND client = ?",
                                    (submission.client,)).fetchone()[0]
                if queued >= client_max_queued:
                    raise ClientLimit(queued)
            job_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO jobs (id, status, params, width, height, input_bytes, input_format, fingerprint, "
                "idempotency_key, created_at, client) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, json.dumps(client_params(submission.params)), submission.width, submission.height,
                 len(submission.image), submission.image_format, submission.fingerprint,
                 submission.idempotency_key, time.time(), submission.client))
            db.execute("INSERT INTO blobs (job_id, kind, data) VALUES (?, 'input', ?)", (job_id, submission.image))
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return SubmitOutcome(self._record(row), created=True)

    def claim_next(self, client_max_running: int | None = None) -> JobRecord | None:
        """Move the oldest queued job to running and return it, passing over the jobs of clients that have
        ``client_max_running`` running already."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND (client IS NULL OR client NOT IN "
                "(SELECT client FROM jobs WHERE status = 'running' AND client IS NOT NULL GROUP BY client "
                "HAVING COUNT(*) >= ?)) ORDER BY seq LIMIT 1",
                (client_max_running if client_max_running is not None else 2**62,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, "
                       "progress_iteration = 0, progress_total = NULL, progress_psnr = NULL WHERE id = ?",
                       (time.time(), row["id"]))
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return self._record(row)

    def update_progress(self, job_id: str, iteration: int, total: int | None, psnr: float | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET progress_iteration = ?, progress_total = ?, progress_psnr = ? "
                       "WHERE id = ? AND status = 'running'", (iteration, total, psnr, job_id))

    def finish_succeeded(self, job_id: str, data: bytes, *, bpp: float, psnr: float, n_gaussians: int,
                         seconds: float, device: str, iteration: int, total: int | None) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO blobs (job_id, kind, data) VALUES (?, 'result', ?)", (job_id, data))
            db.execute("DELETE FROM blobs WHERE job_id = ? AND kind = 'input'", (job_id,))
            db.execute(
                "UPDATE jobs SET status = 'succeeded', finished_at = ?, result_bytes = ?, result_bpp = ?, "
                "result_psnr = ?, result_n_gaussians = ?, result_seconds = ?, result_device = ?, "
                "progress_iteration = ?, progress_total = ?, result_sha256 = ? WHERE id = ?",
                (time.time(), len(data), bpp, psnr, n_gaussians, seconds, device, iteration, total,
                 result_digest(data), job_id))

    def finish(self, job_id: str, status: JobStatus, code: str | None = None, message: str | None = None) -> None:
        """End a job as failed or canceled (its input is dropped)."""
        assert status in (JobStatus.failed, JobStatus.canceled)
        with self._tx() as db:
            db.execute("DELETE FROM blobs WHERE job_id = ? AND kind = 'input'", (job_id,))
            db.execute("UPDATE jobs SET status = ?, finished_at = ?, error_code = ?, error_message = ? WHERE id = ?",
                       (status.value, time.time(), code, message, job_id))

    def requeue(self, job_id: str) -> None:
        """Put a job interrupted by a clean shutdown back in the queue (this start does not count)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET status = 'queued', started_at = NULL, attempts = MAX(attempts - 1, 0), "
                       "progress_iteration = 0, progress_total = NULL, progress_psnr = NULL "
                       "WHERE id = ? AND status = 'running'", (job_id,))

    def request_cancel(self, job_id: str) -> tuple[JobRecord, JobStatus] | None:
        """Cancel a queued job now; flag a running one (its worker stops it). Returns the job and the status
        it had before."""
        with self._tx() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            before = JobStatus(row["status"])
            if row["status"] == "queued":
                db.execute("DELETE FROM blobs WHERE job_id = ? AND kind = 'input'", (job_id,))
                db.execute("UPDATE jobs SET status = 'canceled', finished_at = ?, cancel_requested = 1, "
                           "error_code = 'canceled', error_message = 'canceled before it started' WHERE id = ?",
                           (time.time(), job_id))
            elif row["status"] == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._record(row), before

    def recover(self, max_attempts: int) -> dict[str, int]:
        """After a start: jobs left running by a dead process are queued again (or end, see below)."""
        now = time.time()
        with self._refusing(), self._tx() as db:  # the first writes since the open: its triggers fire here
            canceled = db.execute(
                "UPDATE jobs SET status = 'canceled', finished_at = ?, error_code = 'canceled', "
                "error_message = 'canceled while running' WHERE status = 'running' AND cancel_requested = 1",
                (now,)).rowcount
            failed = db.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, error_code = 'worker_lost', "
                "error_message = 'the server stopped during this encode ' || attempts || ' times' "
                "WHERE status = 'running' AND attempts >= ?", (now, max_attempts)).rowcount
            requeued = db.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL, progress_iteration = 0, "
                "progress_total = NULL, progress_psnr = NULL WHERE status = 'running'").rowcount
            db.execute("DELETE FROM blobs WHERE kind = 'input' AND job_id IN "
                       f"(SELECT id FROM jobs WHERE status IN {_FINISHED})")
            queued = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
        return {"requeued": requeued, "queued": queued, "failed": failed, "canceled": canceled}

    def purge_expired(self, now: float | None = None) -> int:
        """Drop the results of jobs past retention (the row stays, so the result answers 410, not 404);
        forget rows 7 retention periods old. Returns how many results were dropped."""
        now = time.time() if now is None else now
        with self._tx() as db:
            expired = [r[0] for r in db.execute(
                f"SELECT id FROM jobs WHERE status IN {_FINISHED} AND purged = 0 AND finished_at + ? <= ?",
                (self.retention, now)).fetchall()]
            for job_id in expired:
                db.execute("DELETE FROM blobs WHERE job_id = ?", (job_id,))
            if expired:
                marks = ",".join("?" * len(expired))
                db.execute(f"UPDATE jobs SET purged = 1, idempotency_key = NULL WHERE id IN ({marks})", expired)
            db.execute(f"DELETE FROM jobs WHERE status IN {_FINISHED} AND finished_at + ? <= ?",
                       (7 * self.retention, now))
        return len(expired)


def _check_wal(wal: Path) -> None:
    """Refuse a WAL whose commits SQLite would drop without a word: it replays frames up to the first whose
    checksum fails, or whose salts are not the header's, and ignores the whole log when the header's own
    checksum fails. So a damaged header, a frame of this log's generation that fails its checksum, or one
    followed later by frames of this generation all mean lost commits (acknowledged jobs)."""
    if not wal.exists() or wal.stat().st_size == 0:
        return
    restore = f"restore the database with its {wal.name} from a backup, or move {wal.name} away to start from " \
              "the last checkpoint without the jobs it holds"
    with wal.open("rb") as file:
        header = file.read(_WAL_HEADER)
        if len(header) < _WAL_HEADER or int.from_bytes(header[:4], "big") not in _WAL_MAGIC:
            raise StoreDamaged(f"{wal} is not a write-ahead log (zeroed or overwritten): the jobs it holds would "
                               f"be lost; {restore}")
        magic, _, page_size, _, salt1, salt2, sum1, sum2 = struct.unpack(">8I", header)
        order = ">u4" if magic & 1 else "<u4"  # the checksum's byte order, named by the magic's last bit
        frame_size = _WAL_FRAME_HEADER + page_size
        frames = (wal.stat().st_size - _WAL_HEADER) // frame_size
        checksum = _WalChecksum(order)
        if checksum.update(header[:24]) != (sum1, sum2):
            if frames:
                raise StoreDamaged(f"{wal}: its header fails its checksum, so SQLite would ignore the {frames} "
                                   f"frames it holds; {restore}")
            return
        ended = None  # the first frame that is not this generation's: the log's end, unless more follow
        for index in range(frames):
            frame = file.read(frame_size)
            salts = struct.unpack(">2I", frame[8:16])
            if salts != (salt1, salt2):
                ended = index if ended is None else ended
                continue
            if ended is not None:
                raise StoreDamaged(f"{wal}: frame {ended} of {frames} is damaged (its salts), so SQLite would drop "
                                   f"the commits after it; {restore}")
            checksum.update(frame[:8])
            if checksum.update(frame[_WAL_FRAME_HEADER:]) != struct.unpack(">2I", frame[16:24]):
                raise StoreDamaged(f"{wal}: frame {index} of {frames} fails its checksum, so SQLite would drop "
                                   f"the commits from there on; {restore}")


class _WalChecksum:
    """SQLite's running WAL checksum: for each pair of 32-bit words (x0, x1), s0 += x0 + s1, then s1 += x1 + s0,
    modulo 2**32. That step is linear, s' = M s + (x0, x0 + x1) with M = [[1, 1], [1, 2]], so a block of n pairs
    is M**n s plus a sum numpy computes at once."""

    _STEP = np.array([[1, 1], [1, 2]], dtype=np.uint64)
    _MASK = np.uint64(0xFFFFFFFF)

    def __init__(self, order: str) -> None:
        self.order = order
        self.sums = np.zeros(2, dtype=np.uint64)
        self._powers = np.eye(2, dtype=np.uint64)[None]  # [n, 2, 2]: M**0 .. M**(n - 1), grown on demand

    def _power_table(self, n: int) -> np.ndarray:  # [n + 1, 2, 2]
        while len(self._powers) <= n:
            self._powers = np.concatenate([self._powers, (self._STEP @ self._powers[-1] & self._MASK)[None]])
        return self._powers[:n + 1]

    def update(self, data: bytes) -> tuple[int, int]:
        words = np.frombuffer(data, dtype=self.order).astype(np.uint64)
        first, second = words[0::2], words[1::2]
        steps = np.stack([first, (first + second) & self._MASK], axis=1)  # [n, 2]
        powers = self._power_table(len(steps))
        # uint64 products and sums wrap modulo 2**64, which keeps them right modulo 2**32
        self.sums = (powers[-1] @ self.sums + np.einsum("kij,kj->i", powers[-2::-1], steps)) & self._MASK
        return int(self.sums[0]), int(self.sums[1])
