"""Helpers shared by the service tests: images in many flavours, bounded polling, a live uvicorn server."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ports import free_port

REPO = Path(__file__).resolve().parents[2]
FINISHED = ("succeeded", "failed", "canceled")

FAST = {"iterations": "10", "preset": "high"}


def submit(client, data: bytes, headers=None, **form):
    return client.post("/encode", files={"file": ("upload.png", data, "image/png")},
                       data={**FAST, **form}, headers=headers or {})


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status and body["message"]
    return body


def gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256],
                    axis=-1).astype(np.uint8)


def image_bytes(width: int, height: int, fmt: str = "PNG", mode: str = "RGB", **save) -> bytes:
    image = Image.fromarray(gradient(width, height), "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_header_png(width: int = 65535, height: int = 65535) -> bytes:
    """A PNG whose header claims width x height pixels, with a few bytes of payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def wait_for(get_json, *, until=FINISHED, timeout: float = 60.0, interval: float = 0.05) -> dict:
    """Poll ``get_json()`` (a job resource) until its status is in ``until``; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {job['status']} after {timeout} s: {job}")
        time.sleep(interval)


def wait_job(client, job_id: str, **kwargs) -> dict:
    return wait_for(lambda: client.get(f"/jobs/{job_id}").json(), **kwargs)


def metric(text: str, line_start: str) -> float:
    """The sum of the Prometheus samples whose line starts with ``line_start``."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    assert values, f"no metric {line_start!r}"
    return sum(values)


def copy_store(source: Path, target: Path) -> None:
    """Copy a job store's files (database, WAL, marker) as they are, as a crash would leave them if the store
    is open."""
    from service.queue.store import STORE_FILE

    target.mkdir(parents=True, exist_ok=True)
    for name in (STORE_FILE, STORE_FILE + "-wal", STORE_FILE + ".created"):
        shutil.copy(source / name, target / name)


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


def _env(**extra: str) -> dict[str, str]:
    # GSIC_DEVICE from the environment (e.g. cuda on a GPU machine), else the CPU.
    env = {**os.environ, "GSIC_DEVICE": os.environ.get("GSIC_DEVICE", "cpu"), "GSIC_LOG_LEVEL": "warning", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class _Process:
    """A child process with a log file: SIGKILL (a crash: no shutdown handler runs) or SIGTERM (clean)."""

    proc: subprocess.Popen | None = None
    log_path: Path

    def log(self, tail: int | None = 5000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text if tail is None else text[-tail:]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()


class LiveServer(_Process):
    """``python -m service`` under uvicorn on a free loopback port, with its own data dir and log file.
    ``start`` waits until ``ready_path`` answers 200 (/healthz for an API whose workers run elsewhere)."""

    def __init__(self, data_dir: Path, log_path: Path, ready_path: str = "/readyz", **env: str):
        self.data_dir, self.log_path, self.ready_path, self.extra_env = Path(data_dir), Path(log_path), ready_path, env
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> LiveServer:
        env = _env(GSIC_DATA_DIR=str(self.data_dir), **self.extra_env)
        for _ in range(3):  # another process may grab the port between free_port() and the bind
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port)],
                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            if self.proc.poll() is None:
                self.kill()
                break
        raise AssertionError(f"the server did not become ready; log:\n{self.log()}")

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LiveWorker(_Process):
    """``gsic worker`` (python -m cli.main worker) as its own process, logging at info level to ``log_path``."""

    def __init__(self, name: str, log_path: Path, **env: str):
        self.name, self.log_path, self.extra_env = name, Path(log_path), env
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveWorker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker", "--name", self.name],
                cwd=REPO, env=_env(GSIC_LOG_LEVEL="info", **self.extra_env), stdout=log, stderr=subprocess.STDOUT)
        return self


def recorded_successes(workers: list[LiveWorker]) -> Counter:
    """Job ids the ``gsic worker`` processes recorded as succeeded (a refused duplicate is logged as "not
    recorded")."""
    pattern = re.compile(r"job (\S+) succeeded$", re.MULTILINE)
    return Counter(job_id for w in workers for job_id in pattern.findall(w.log(tail=None)))


class RedisServer:
    """A real redis-server (from PATH) on a loopback port that a test can stop and start again on the same port,
    or freeze (SIGSTOP: it accepts connections but answers nothing). Without persistence it starts empty again;
    with ``appendonly`` every write is fsynced to its append-only file before it is answered, and a restart
    reloads it (as docs/api.md tells operators to run it)."""

    def __init__(self, executable: str, port: int, workdir: Path, appendonly: bool = False):
        self.executable, self.port, self.workdir = executable, port, workdir
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else \
            ["--appendonly", "no"]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> bool:
        """Start it and wait until it answers; False when it did not (e.g. the port was taken)."""
        import redis

        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen([self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", *self.persistence, "--dir", str(self.workdir)],
                                         stdout=log, stderr=log)
        with redis.Redis(port=self.port) as client:
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    client.ping()
                    return True
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        self.thaw()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def redis_process(workdir: Path, appendonly: bool = False):
    """A started ``RedisServer`` on a free port, stopped afterwards. Skips the test where redis-server is not
    installed, except under CI=true, where that fails it."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not on PATH; .ci/run installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    for _ in range(3):  # another process may take the port between free_port() and the bind
        server = RedisServer(executable, free_port(), workdir, appendonly)
        if server.start():
            try:
                yield server
            finally:
                server.stop()
            return
    raise AssertionError(f"redis-server did not start:\n{(workdir / 'redis.log').read_text()[-3000:]}")


@contextlib.contextmanager
def running_redis(workdir: Path):
    """``redis_process``'s URL (without a db)."""
    with redis_process(workdir) as server:
        yield server.url
